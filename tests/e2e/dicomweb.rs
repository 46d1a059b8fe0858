//! DICOMweb: STOW-RS, QIDO/WADO through a standard client, rendering checked against
//! DCMTK and an independent decode.

use super::*;

on_both!(stow_rs);
on_s3!(stow_rs);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rendered_cr_keeps_polarity_like_dcmtk() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let file = data("pydicom-data/RG1_UNCR.dcm");
    let (code, out) = hub.storescu("MODA", &[], std::slice::from_ref(&file)).await;
    assert_eq!(code, 0, "{out}");
    let (study, series, sop, _) = sop_of(&file);
    let base = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    let ours = hub.get(&admin, &format!("{base}/rendered?accept=image/png")).await;
    assert_eq!(ours.status(), 200);
    let ours = image::load_from_memory(&ours.bytes().await.unwrap()).unwrap().to_luma8();
    assert_eq!((ours.width(), ours.height()), (1841, 1955));
    // DCMTK's own rendering of the same file with its first VOI window
    let dir = tempfile::tempdir().unwrap();
    let theirs_path = dir.path().join("dcmtk.png");
    let st = std::process::Command::new("dcmj2pnm")
        .args(["--write-png", "--use-window", "1"])
        .arg(&file)
        .arg(&theirs_path)
        .status()
        .expect("dcmj2pnm (DCMTK)");
    assert!(st.success());
    let theirs = image::open(&theirs_path).unwrap().to_luma8();
    let (a, b): (Vec<f64>, Vec<f64>) = ours.pixels().zip(theirs.pixels()).map(|(x, y)| (x.0[0] as f64, y.0[0] as f64)).unzip();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let var = |v: &[f64], m: f64| v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    let r = cov / (var(&a, ma) * var(&b, mb)).sqrt();
    assert!(r > 0.98, "rendering differs from DCMTK's (correlation {r:.3}); inverted polarity gives a negative value");
    let mad = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64;
    assert!(mad < 8.0, "mean absolute difference {mad:.2} grey levels");
    // PALETTE COLOR: the palette is applied (not grey indices), as DCMTK does
    let pal = data("debian-octave-dicom/US-PAL-8-10x-echo.dcm");
    let (code, out) = hub.storescu("MODA", &["-xr"], std::slice::from_ref(&pal)).await;
    assert_eq!(code, 0, "{out}");
    let (pst, pse, psop, _) = sop_of(&pal);
    let r = hub.get(&admin, &format!("/dicom-web/studies/{pst}/series/{pse}/instances/{psop}/frames/3/rendered?accept=image/png")).await;
    assert_eq!(r.status(), 200);
    let ours = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgb8();
    let theirs_path = dir.path().join("pal.png");
    let st = std::process::Command::new("dcmj2pnm")
        .args(["--write-png", "--frame", "3"])
        .arg(&pal)
        .arg(&theirs_path)
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = image::open(&theirs_path).unwrap().to_rgb8();
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let diff: u64 = ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64).sum();
    assert!(diff as f64 / (ours.as_raw().len() as f64) < 1.0, "palette rendering differs from DCMTK's (mean abs diff {})", diff as f64 / ours.as_raw().len() as f64);
    assert!(ours.pixels().any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2]), "the palette gives colour");
    // Presentation LUT Shape INVERSE on MONOCHROME2 displays inverted
    let inverse_file = dir.path().join("ct-inverse.dcm");
    let script = r#"
import sys
from pydicom import dcmread
ds = dcmread(sys.argv[1])
ds.PresentationLUTShape = "INVERSE"
ds.SOPInstanceUID = ds.SOPInstanceUID + ".1"
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(sys.argv[2])
print(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
"#;
    let ct = data("pynetdicom/CTImageStorage.dcm");
    let out = tokio::process::Command::new(common::python()).args(["-c", script]).arg(&ct).arg(&inverse_file).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, log) = hub.storescu("MODA", &[], &[ct.clone(), inverse_file.clone()]).await;
    assert_eq!(code, 0, "{log}");
    let (cst, cse, csop, _) = sop_of(&ct);
    let render = |sop: String| {
        let path = format!("/dicom-web/studies/{cst}/series/{cse}/instances/{sop}/rendered?accept=image/png&window=40,400");
        let admin = admin.clone();
        let hub = &hub;
        async move { image::load_from_memory(&hub.get(&admin, &path).await.bytes().await.unwrap()).unwrap().to_luma8() }
    };
    let normal = render(csop.clone()).await;
    let inverted = render(format!("{csop}.1")).await;
    assert!(
        normal.pixels().zip(inverted.pixels()).all(|(a, b)| a.0[0] as u16 + b.0[0] as u16 == 255),
        "INVERSE is the exact negative of the same image"
    );
    // bad rendering requests are 4xx with a reason
    assert_eq!(hub.get(&admin, &format!("{base}/frames/2/rendered")).await.status(), 400);
    assert_eq!(hub.get(&admin, &format!("{base}/frames/x/rendered")).await.status(), 400);
    assert_eq!(hub.get(&admin, &format!("{base}/rendered?window=1,0")).await.status(), 400);
    assert_eq!(hub.get(&admin, &format!("{base}/rendered?window=15000,30000,cubic")).await.status(), 400);
    let sig = hub.get(&admin, &format!("{base}/rendered?window=15000,30000,sigmoid&accept=image/png")).await;
    assert_eq!(sig.status(), 200);
    let sig = image::load_from_memory(&sig.bytes().await.unwrap()).unwrap().to_luma8();
    assert_ne!(sig.as_raw(), ours.as_raw(), "the sigmoid VOI function renders differently from linear");
    assert_eq!(hub.get(&admin, "/dicom-web/studies/1.2.3/series/1..2/instances/3/rendered").await.status(), 400);
    hub.stop().await;
}

async fn stow_rs(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let referrer = hub.user("ref-a", Role::Referrer, Some("Township-A")).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let rg1 = std::fs::read(data("pydicom-data/RG1_UNCR.dcm")).unwrap();
    let ct = std::fs::read(data("pynetdicom/CTImageStorage.dcm")).unwrap();
    let post = |who: &(String, String), path: &str, ct: &str, body: Vec<u8>| {
        hub.http()
            .post(format!("{}{path}", hub.base))
            .basic_auth(&who.0, Some(&who.1))
            .header("content-type", ct.to_string())
            .body(body)
            .send()
    };
    let (ctype, body) = multipart(&[
        ("application/dicom", rg1.clone()),
        ("application/dicom", ct.clone()),
        ("text/plain", b"not an image".to_vec()),
        ("application/dicom", b"not DICOM either, no preamble at all".to_vec()),
    ]);
    let r = post(&tech, "/dicom-web/studies", &ctype, body).await.unwrap();
    assert_eq!(r.status(), 202, "some stored, some refused");
    assert_eq!(r.headers()["content-type"], "application/dicom+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["00081199"]["Value"].as_array().unwrap().len(), 2, "{v}");
    let failed = v["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{v}");
    assert!(failed.iter().all(|f| f["00081197"]["Value"][0] == json!(0xC000)), "{v}");
    // byte for byte what was sent, meta group included
    let (study, series, sop, _) = sop_of(&data("pydicom-data/RG1_UNCR.dcm"));
    let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    let got = hub.get_accept(&tech, &url, "application/dicom; transfer-syntax=*").await
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == rg1[..], "STOW-RS round trip is not byte-identical");
    // QIDO-RS at every level, nested and not
    let found = hub.get_json(&tech, &format!("/dicom-web/studies/{study}/series")).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["0020000E"]["Value"][0], json!(series));
    assert_eq!(found[0]["00080060"]["Value"][0], "CR");
    assert_eq!(found[0]["00201209"]["Value"][0], 1);
    let inst = hub.get_json(&tech, &format!("/dicom-web/studies/{study}/series/{series}/instances")).await;
    assert_eq!(inst[0]["00080018"]["Value"][0], json!(sop));
    assert_eq!(inst[0]["00083002"]["Value"][0], "1.2.840.10008.1.2.1");
    assert!(inst[0]["00081190"]["Value"][0].as_str().unwrap().ends_with(&url));
    let by_sop = hub.get_json(&tech, &format!("/dicom-web/instances?SOPInstanceUID={sop}")).await;
    assert_eq!(by_sop.as_array().unwrap().len(), 1);
    let ct_series = hub.get_json(&tech, "/dicom-web/series?Modality=CT").await;
    assert_eq!(ct_series.as_array().unwrap().len(), 1);
    assert_eq!(hub.get(&tech, "/dicom-web/series?Modality=MR").await.status(), 204);
    let r = hub.get(&tech, "/dicom-web/studies?PatientAge=040Y").await;
    assert!(r.headers()["warning"].to_str().unwrap().contains("PatientAge"), "unsupported keys are ignored with a warning");
    assert_eq!(hub.get(&tech, "/dicom-web/instances?SOPInstanceUID=1.2.x").await.status(), 400);
    // includefield: by keyword or tag, and `all` per level, read from the stored header
    let inc = hub.get_json(&tech, &format!("/dicom-web/studies?StudyInstanceUID={study}&includefield=InstitutionName,00081010")).await;
    assert_eq!(inc[0]["00080080"]["Value"][0], "Philips Medical Systems Hamburg", "{inc}");
    assert_eq!(inc[0]["00081010"]["Value"][0], "THORAVISION", "{inc}");
    assert!(inc[0].get("00180060").is_none(), "only what was asked: {inc}");
    let all = hub.get_json(&tech, &format!("/dicom-web/studies?StudyInstanceUID={study}&includefield=all")).await;
    assert_eq!(all[0]["00100030"]["Value"][0], "19400305", "patient module: {all}");
    assert!(all[0].get("00180060").is_none(), "no instance-level KVP at study level: {all}");
    let all = hub.get_json(&tech, &format!("/dicom-web/studies/{study}/series?includefield=all")).await;
    assert_eq!(all[0]["00080070"]["Value"][0], "Philips Medical Systems", "equipment: {all}");
    assert_eq!(all[0]["00080021"]["Value"][0], "19950926", "{all}");
    let all = hub.get_json(&tech, &format!("/dicom-web/studies/{study}/series/{series}/instances?includefield=all")).await;
    assert_eq!(all[0]["00180060"]["Value"][0], json!(150.0), "KVP: {all}");
    let pixel = all[0]["7FE00010"]["BulkDataURI"].as_str().unwrap_or_default();
    assert!(pixel.starts_with("http") && pixel.contains(&url), "pixel data by reference: {all}");
    // asked for at study level, bulk data still points at the instance that holds it
    let inc = hub.get_json(&tech, &format!("/dicom-web/studies?StudyInstanceUID={study}&includefield=7FE00010")).await;
    let pixel = inc[0]["7FE00010"]["BulkDataURI"].as_str().unwrap_or_default().to_string();
    assert!(pixel.contains(&format!("{url}/bulkdata/7FE00010")), "{inc}");
    assert_eq!(hub.get(&tech, &pixel.replace(&hub.base, "")).await.status(), 200, "{pixel}");
    let r = hub.get(&tech, "/dicom-web/studies?includefield=NoSuchKeyword").await;
    assert_eq!(r.status(), 400);
    // WADO-RS study retrieve: every instance as a part; thumbnails
    let r = hub.get(&tech, &format!("/dicom-web/studies/{study}")).await;
    assert_eq!(r.status(), 200);
    let ct_header = r.headers()["content-type"].to_str().unwrap().to_string();
    let boundary = ct_header.split("boundary=").nth(1).unwrap().to_string();
    let all = r.bytes().await.unwrap();
    let marker = format!("--{boundary}\r\n");
    assert_eq!(all.windows(marker.len()).filter(|w| *w == marker.as_bytes()).count(), 1, "one instance in the study");
    assert!(all.windows(rg1.len().min(4096)).any(|w| w == &rg1[..4096]), "the part carries the stored file");
    let r = hub.get(&tech, &format!("/dicom-web/studies/{study}/thumbnail")).await;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert!(thumb.width() <= 128 && thumb.height() <= 128);
    assert_eq!(hub.get(&tech, "/dicom-web/studies/1.2.3.999").await.status(), 404);
    // WADO-RS metadata from the index, with a BulkDataURI for the pixels that resolves
    let meta = hub.get_json(&tech, &format!("/dicom-web/studies/{study}/metadata")).await;
    assert_eq!(meta.as_array().unwrap().len(), 1);
    assert_eq!(meta[0]["00080018"]["Value"][0], json!(sop));
    assert_eq!(meta[0]["00280010"]["Value"][0], 1955);
    assert_eq!(meta[0]["00080005"]["Value"][0], "ISO_IR 192");
    let bulk = meta[0]["7FE00010"]["BulkDataURI"].as_str().unwrap().to_string();
    assert!(bulk.ends_with(&format!("{url}/bulkdata/7FE00010")), "{bulk}");
    let pixels = hub
        .http()
        .get(&bulk)
        .basic_auth(&tech.0, Some(&tech.1))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(pixels.status(), 200);
    assert_eq!(pixels.bytes().await.unwrap().len(), 1841 * 1955 * 2);
    for level in [format!("/dicom-web/studies/{study}/series/{series}/metadata"), format!("{url}/metadata")] {
        assert_eq!(hub.get_json(&tech, &level).await.as_array().unwrap().len(), 1, "{level}");
    }
    assert_eq!(hub.get(&tech, &format!("{url}/bulkdata/00100010")).await.status(), 200);
    assert_eq!(hub.get(&tech, &format!("{url}/bulkdata/7FE0")).await.status(), 400);
    assert_eq!(hub.get(&tech, "/dicom-web/studies/1.2.3.999/metadata").await.status(), 404);
    assert_eq!(hub.get(&reader, &format!("/dicom-web/studies/{study}/metadata")).await.status(), 200);
    // stored instances reach the reading queue like pushed ones
    hub.eventually("both studies are queued", || async { hub.queue(&reader).await.len() == 2 }).await;
    // a re-upload is a duplicate, not a second copy
    let (ctype, body) = multipart(&[("application/dicom", ct.clone())]);
    assert_eq!(post(&tech, "/dicom-web/studies", &ctype, body).await.unwrap().status(), 200);
    use sqlx::Row;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, 2);
    // into the wrong study: refused with 0xA900, nothing stored
    let (ctype, body) = multipart(&[("application/dicom", ct.clone())]);
    let r = post(&tech, "/dicom-web/studies/1.2.3.4.5", &ctype, body).await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["00081198"]["Value"][0]["00081197"]["Value"][0], json!(0xA900), "{v}");
    // bad requests
    let (ctype, body) = multipart(&[("application/dicom", ct.clone())]);
    assert_eq!(post(&referrer, "/dicom-web/studies", &ctype, body.clone()).await.unwrap().status(), 403);
    assert_eq!(post(&tech, "/dicom-web/studies", "application/json", b"{}".to_vec()).await.unwrap().status(), 415);
    assert_eq!(
        post(&tech, "/dicom-web/studies", "multipart/related; type=\"image/jpeg\"; boundary=x", body.clone()).await.unwrap().status(),
        415
    );
    let truncated = body[..body.len() / 2].to_vec();
    let r = post(&tech, "/dicom-web/studies", &ctype, truncated).await.unwrap();
    assert_eq!(r.status(), 400, "a body cut short is a malformed request");
    assert_eq!(post(&tech, "/dicom-web/studies/1..2", &ctype, body).await.unwrap().status(), 400);
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, 2, "nothing half-stored by the bad requests");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dicomweb_client_conformance() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dicomweb_client_check.py");
    let out = tokio::process::Command::new(common::python())
        .arg(&script)
        .args([&hub.base, &tech.0, &tech.1])
        .arg(data("pynetdicom/CTImageStorage.dcm"))
        .output()
        .await
        .expect("python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dicomweb-client checks failed (is the test venv set up?):\n{text}");
    assert_eq!(text.matches("\nok   ").count() + text.starts_with("ok   ") as usize, 11, "{text}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_url_and_cors() {
    let hub = Hub::start_with(Backend::Sqlite, |c| {
        c.public_url = Some("https://hub.example.org/".into());
        c.cors_origins = vec!["http://viewer.example.org".into()];
    })
    .await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let (code, out) = hub.storescu("MODA", &[], &[data("pynetdicom/CTImageStorage.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    let studies = hub.get_json(&admin, "/dicom-web/studies").await;
    let url = studies[0]["00081190"]["Value"][0].as_str().unwrap();
    assert!(url.starts_with("https://hub.example.org/dicom-web/studies/"), "{url}");
    let preflight = |origin: &'static str| {
        hub.http()
            .request(Method::OPTIONS, format!("{}/dicom-web/studies", hub.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("http://viewer.example.org").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://viewer.example.org");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = preflight("http://elsewhere.example.org").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "only the configured origins");
    hub.stop().await;
}

/// Every photometric interpretation and compressed syntax among the samples, rendered by
/// readhub and by an independent pipeline (pydicom + pylibjpeg's libjpeg/openjpeg, pydicom's
/// LUT functions): tests/peers/render_oracle.py states the reference and the tolerance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rendered_pixels_match_an_independent_decode() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    // (storescu flag proposing the file's own syntax, file, frame, lossy)
    let samples: &[(&str, &str, u32, bool)] = &[
        ("-xe", "pydicom-data/RG1_UNCR.dcm", 1, false),                   // MONOCHROME1, window
        ("-xv", "pydicom-data/RG3_J2KR.dcm", 1, false),                   // MONOCHROME1, J2K lossless
        ("-xw", "pydicom-data/RG1_J2KI.dcm", 1, true),                    // MONOCHROME1, J2K lossy
        ("-xe", "pydicom/test_files/CT_small.dcm", 1, false),             // signed CT, rescale, no window
        ("-xv", "pydicom-data/693_J2KR.dcm", 1, false),                   // CT, J2K lossless, window
        ("-xw", "pydicom/test_files/JPEG2000.dcm", 1, true),              // J2K lossy
        ("-xt", "pydicom/test_files/MR_small_jpeg_ls_lossless.dcm", 1, false), // JPEG-LS lossless
        ("-xx", "pydicom/test_files/JPGExtended.dcm", 1, true),           // JPEG extended, 12-bit
        ("-xs", "pydicom-data/JPEG-LL.dcm", 1, false),                    // JPEG lossless, 16-bit
        ("-xs", "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm", 1, false), // JPEG lossless, 8-bit
        ("-xr", "pydicom-data/emri_small_RLE.dcm", 5, false),             // RLE, 16-bit multi-frame
        ("-xr", "debian-octave-dicom/US-PAL-8-10x-echo.dcm", 10, false),  // PALETTE COLOR, RLE
        ("-xr", "pydicom-data/OBXXXX1A_rle_2frame.dcm", 2, false),        // RLE colour, frame 2
        ("-xe", "pydicom-data/US1_UNCR.dcm", 1, false),                   // RGB
        ("-xb", "pydicom/test_files/ExplVR_BigEnd.dcm", 1, false),        // RGB, big endian
        ("-xb", "pydicom-data/SC_rgb_expb_16bit_2frame.dcm", 2, false),   // RGB 16-bit
        ("-xy", "pydicom/test_files/SC_rgb_jpeg_dcmtk.dcm", 1, true),     // YBR_FULL, JPEG baseline
        ("-xy", "pydicom-data/color3d_jpeg_baseline.dcm", 1, true),       // YBR_FULL_422
        ("-xv", "pydicom-data/US1_J2KR.dcm", 1, false),                   // YBR_RCT
    ];
    let mut args = vec![hub.base.clone(), admin.0.clone(), admin.1.clone()];
    for (flag, file, frame, lossy) in samples {
        let (code, out) = hub.storescu("MODA", &[flag], &[data(file)]).await;
        assert_eq!(code, 0, "storescu {flag} {file} failed:\n{out}");
        args.push(format!("{}:{frame}{}", data(file).display(), if *lossy { ":lossy" } else { "" }));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/render_oracle.py");
    let out = tokio::process::Command::new(common::python()).arg(&script).args(&args).output().await.expect("python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "rendered pixels differ from the independent decode (is the test venv set up?):\n{text}");
    assert_eq!(text.matches("\"ok\": true").count(), samples.len(), "{text}");
    hub.stop().await;
}

/// WADO-RS sends what is stored as it is, with its Content-Length (a single instance and a
/// whole study), and without gzip even when the client accepts it: native pixels over the
/// county LAN gain nothing from it. `gzip_instances` turns it on, and it is transparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wado_sends_stored_bytes_with_their_length_and_gzip_only_when_asked() {
    for gzip_instances in [false, true] {
        let hub = Hub::start_with(Backend::Sqlite, |c| c.gzip_instances = gzip_instances).await;
        hub.site("Township-A", &["MODA"], None).await;
        let admin = hub.user("admin", Role::Admin, None).await;
        let files = [data("pydicom-data/RG1_UNCR.dcm")];
        for f in &files {
            let (code, out) = hub.storescu("MODA", &["-xe"], std::slice::from_ref(f)).await;
            assert_eq!(code, 0, "{out}");
        }
        let (study, series, sop, _) = sop_of(&files[0]);
        let get = |path: String, accept: &'static str| {
            hub.http()
                .get(format!("{}{path}", hub.base))
                .basic_auth(&admin.0, Some(&admin.1))
                .header("accept", accept)
                .header("accept-encoding", "gzip")
                .send()
        };
        let inst = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
        let r = get(inst.clone(), "application/dicom; transfer-syntax=*").await.unwrap();
        assert_eq!(r.status(), 200);
        let encoding = r.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_string());
        let length = r.headers().get("content-length").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        let body = r.bytes().await.unwrap();
        let file = if gzip_instances {
            assert_eq!(encoding.as_deref(), Some("gzip"), "asked for: native pixels are gzipped");
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
            plain
        } else {
            assert_eq!(encoding, None, "not gzipped unless the hub is told to");
            assert_eq!(length, Some(body.len()), "the stored size, sent ahead");
            body.to_vec()
        };
        let obj = dicom_object::from_reader(&file[128..]).unwrap();
        assert_eq!(obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0'), sop);
        // the whole study (multipart): its length is known ahead as well
        let r = get(format!("/dicom-web/studies/{study}"), "multipart/related; type=\"application/dicom\"; transfer-syntax=*").await.unwrap();
        assert_eq!(r.status(), 200);
        if !gzip_instances {
            let length = r.headers().get("content-length").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
            let body = r.bytes().await.unwrap();
            assert_eq!(length, Some(body.len()));
            assert!(body.ends_with(b"--\r\n"));
        }
        // DICOM JSON still travels gzipped when asked (it pays there)
        let r = get(format!("/dicom-web/studies/{study}/metadata"), "application/dicom+json").await.unwrap();
        assert_eq!(r.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
        hub.stop().await;
    }
}

/// The current version of `sop`'s stored file and its blob key.
async fn stored(hub: &Hub, sop: &str) -> (String, Vec<u8>) {
    let rows = storage::query::search_instances(
        &hub.storage.db,
        StudyFilter::All,
        &storage::query::InstanceQuery { sop_instance_uids: vec![sop.to_string()], ..Default::default() },
    )
    .await
    .unwrap();
    let key = rows[0].blob_key.clone();
    let file = hub.storage.blobs.get_bytes(&key).await.unwrap().to_vec();
    (key, file)
}

/// What readhub's renderer makes of `file` for a viewport, rendered afresh here.
fn fresh_render(file: &[u8], viewport: (u32, u32)) -> Vec<u8> {
    let p = dicom_media::render::RenderParams::parse(&[("viewport".into(), format!("{},{}", viewport.0, viewport.1))], "image/jpeg").unwrap();
    dicom_media::render::render_frame(file, 1, &p).unwrap().bytes
}

/// The thumbnails and the viewer's preview are made once after ingest, in the background,
/// kept beside the instance, and served from there byte for byte as a fresh render would
/// be; a new version of the instance gets its own, and the old pictures are not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thumbnails_and_preview_are_made_after_ingest_and_match_a_fresh_render() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let file = data("pydicom-data/RG1_UNCR.dcm");
    let (code, out) = hub.storescu("MODA", &["-xe"], std::slice::from_ref(&file)).await;
    assert_eq!(code, 0, "{out}");
    let (study, series, sop, _) = sop_of(&file);
    let (key, stored_file) = stored(&hub, &sop).await;
    // made without any request for them
    let kept = |key: String, v: (u32, u32)| {
        let blobs = hub.storage.blobs.clone();
        async move { blobs.get_bytes(&viewer_api::renditions::key(&key, v)).await.ok().map(|b| b.to_vec()) }
    };
    hub.eventually("the preview and thumbnails are made after ingest", || {
        let kept = kept.clone();
        let key = key.clone();
        async move {
            for v in viewer_api::renditions::VIEWPORTS {
                if kept(key.clone(), v).await.is_none() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let base = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    for v in viewer_api::renditions::VIEWPORTS {
        let fresh = fresh_render(&stored_file, v);
        assert!(kept(key.clone(), v).await.unwrap() == fresh, "the kept {v:?} rendition is a fresh render, byte for byte");
        let served = hub.get(&admin, &format!("{base}/rendered?viewport={},{}", v.0, v.1)).await;
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "image/jpeg");
        assert!(served.bytes().await.unwrap()[..] == fresh[..], "served {v:?}");
    }
    // the series thumbnail the viewer shows (96) and the DICOMweb default (128)
    let thumb = hub.get(&admin, &format!("/dicom-web/studies/{study}/series/{series}/thumbnail?viewport=96,96")).await;
    assert!(thumb.bytes().await.unwrap()[..] == fresh_render(&stored_file, (96, 96))[..]);
    let thumb = hub.get(&admin, &format!("/dicom-web/studies/{study}/thumbnail")).await;
    assert!(thumb.bytes().await.unwrap()[..] == fresh_render(&stored_file, (128, 128))[..]);

    // a new version of the instance (the modality re-sends it with another window)
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.dcm");
    std::fs::copy(&file, &changed).unwrap();
    let st = std::process::Command::new("dcmodify")
        .args(["-nb", "-m", "(0028,1050)=900", "-m", "(0028,1051)=600"])
        .arg(&changed)
        .status()
        .expect("dcmodify (DCMTK)");
    assert!(st.success());
    let (code, out) = hub.storescu("MODA", &["-xe"], std::slice::from_ref(&changed)).await;
    assert_eq!(code, 0, "{out}");
    let (new_key, new_file) = stored(&hub, &sop).await;
    assert_ne!(new_key, key, "a new version is a new blob");
    let fresh = fresh_render(&new_file, (1024, 1024));
    assert!(fresh != fresh_render(&stored_file, (1024, 1024)), "the new window shows");
    // served as the new version at once (made on request if the worker has not come to it)
    let served = hub.get(&admin, &format!("{base}/rendered?viewport=1024,1024")).await;
    assert!(served.bytes().await.unwrap()[..] == fresh[..], "the old version's preview is not served");
    hub.eventually("the new version's preview is kept", || {
        let kept = kept.clone();
        let new_key = new_key.clone();
        async move { kept(new_key, (1024, 1024)).await.is_some() }
    })
    .await;
    assert!(kept(new_key.clone(), (1024, 1024)).await.unwrap() == fresh);
    hub.stop().await;
}

/// Renditions are not made on the acknowledgement path: with the background worker off,
/// the C-STORE is acknowledged and nothing is rendered; the instance is recorded as
/// wanting its pictures, which a request then makes (as a fresh render) and keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renditions_are_not_made_on_the_acknowledgement_path() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.prerender = false).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let file = data("pydicom-data/RG1_UNCR.dcm");
    let (code, out) = hub.storescu("MODA", &["-xe"], std::slice::from_ref(&file)).await;
    assert_eq!(code, 0, "acknowledged: {out}");
    let (study, series, sop, _) = sop_of(&file);
    let (key, stored_file) = stored(&hub, &sop).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for v in viewer_api::renditions::VIEWPORTS {
        assert!(hub.storage.blobs.get_bytes(&viewer_api::renditions::key(&key, v)).await.is_err(), "nothing rendered for {v:?}");
    }
    let pending = storage::renditions::claim(&hub.storage.db, storage::now_ms(), Duration::from_secs(1), 10).await.unwrap();
    assert!(pending.iter().any(|p| p.blob_key == key), "recorded as wanting its pictures: {pending:?}");
    let base = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    let served = hub.get(&admin, &format!("{base}/rendered?viewport=1024,1024")).await;
    let fresh = fresh_render(&stored_file, (1024, 1024));
    assert!(served.bytes().await.unwrap()[..] == fresh[..]);
    hub.eventually("a preview made on request is kept", || {
        let blobs = hub.storage.blobs.clone();
        let key = key.clone();
        async move { blobs.get_bytes(&viewer_api::renditions::key(&key, (1024, 1024))).await.is_ok() }
    })
    .await;
    hub.stop().await;
}

/// The frames the viewer fetches: JPEG-LS lossless where every sample survives it (from a
/// native and from a JPEG 2000 film: decoded by pylibjpeg's libjpeg, an independent reader,
/// to exactly the native samples), native samples where it would not (signed CT), and a
/// clear 406 when only JPEG-LS is accepted for such an image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_travel_as_jpegls_lossless_where_they_can() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let files = [("-xe", "pydicom-data/RG1_UNCR.dcm"), ("-xv", "pydicom-data/RG1_J2KR.dcm"), ("-xe", "pydicom/test_files/CT_small.dcm")];
    for (flag, f) in files {
        let (code, out) = hub.storescu("MODA", &[flag], &[data(f)]).await;
        assert_eq!(code, 0, "{out}");
    }
    let lossless = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.80, \
                    multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1";
    let only_jpegls = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.80";
    let part = |body: &[u8], ct: &str| -> (String, Vec<u8>) {
        let boundary = ct.split("boundary=").nth(1).unwrap().trim_matches('"').to_string();
        let start = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&body[..start]).to_string();
        let end = body.windows(boundary.len() + 4).rposition(|w| w == format!("\r\n--{boundary}").as_bytes()).unwrap();
        (head, body[start + 4..end].to_vec())
    };
    let dir = tempfile::tempdir().unwrap();
    for (_, f) in &files[..2] {
        let (study, series, sop, _) = sop_of(&data(f));
        let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1");
        let r = hub.get_accept(&admin, &url, lossless).await;
        assert_eq!(r.status(), 200, "{f}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let (head, jls) = part(&r.bytes().await.unwrap(), &ct);
        assert!(head.contains("transfer-syntax=1.2.840.10008.1.2.4.80"), "{f}: {head}");
        let native = hub.get_accept(&admin, &url, "multipart/related; type=\"application/octet-stream\"").await;
        let ct = native.headers()["content-type"].to_str().unwrap().to_string();
        let (_, native) = part(&native.bytes().await.unwrap(), &ct);
        assert!(jls.len() < native.len(), "{f}: compressed {} of {}", jls.len(), native.len());
        // pylibjpeg's libjpeg decodes the codestream to exactly the native samples
        let (jls_path, native_path) = (dir.path().join("f.jls"), dir.path().join("f.raw"));
        std::fs::write(&jls_path, &jls).unwrap();
        std::fs::write(&native_path, &native).unwrap();
        let check = "import sys, numpy, libjpeg\n\
                     a = libjpeg.decode(open(sys.argv[1], 'rb').read())\n\
                     b = numpy.frombuffer(open(sys.argv[2], 'rb').read(), dtype='<u2').reshape(a.shape)\n\
                     assert a.dtype.itemsize == 2 and (a.astype('<u2') == b).all(), 'samples differ'\n\
                     print(a.shape)";
        let out = std::process::Command::new(common::python()).args(["-c", check]).arg(&jls_path).arg(&native_path).output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // signed CT samples: native, as the viewer's list allows; 406 when JPEG-LS alone is asked
    let (study, series, sop, _) = sop_of(&data(files[2].1));
    let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1");
    let r = hub.get_accept(&admin, &url, lossless).await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(part(&r.bytes().await.unwrap(), &ct).0.contains("transfer-syntax=1.2.840.10008.1.2.1"));
    let r = hub.get_accept(&admin, &url, only_jpegls).await;
    assert_eq!(r.status(), 406);
    assert!(r.text().await.unwrap().contains("JPEG-LS"));
    hub.stop().await;
}
