//! The web viewer in headless Chromium.

use super::*;

/// The web viewer in Chromium (tests/browser/viewer.mjs): a film pushed with storescu is on
/// the reader's worklist, claimed with N, rendered (canvas pixels checked, changed by a
/// window/level drag and by invert), signed; a length on a CT of known Pixel Spacing reads
/// the expected mm; a synthetic ECG of known rhythm shows 12 labelled leads and calipers
/// read its RR interval; the site's referrer sees, prints and gets the PDF, another site's
/// referrer does not; a technician's folder upload refuses exactly the file that is not
/// DICOM; the admin's dashboard. Screenshots go to target/browser-shots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_reads_films_and_ecgs() {
    if !common::peer_present("READHUB_TEST_BROWSER", "Chromium with playwright-core") {
        return;
    }
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB", "MODB2"], None).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let ecg_reader = hub.user("ecg1", Role::Reader, Some("ecg")).await;
    let ref_a = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let ref_b = hub.user("doc-b", Role::Referrer, Some("Township-B")).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    // a CR film (Pixel Spacing 0\0: uncalibrated), then a CT of known Pixel Spacing, then a
    // synthetic ECG of known rhythm, all pushed by storescu
    let dir = tempfile::tempdir().unwrap();
    let ecg = dir.path().join("ecg.dcm");
    let out = std::process::Command::new(common::python()).arg(root().join("tests/peers/make_ecg.py")).arg(&ecg).output().unwrap();
    assert!(out.status.success(), "make_ecg.py: {}", String::from_utf8_lossy(&out.stderr));
    for (file, ready) in [(data("pydicom-data/RG1_UNCR.dcm"), 1), (data("pydicom-data/693_UNCR.dcm"), 2)] {
        let (code, out) = hub.storescu("MODA", &[], &[file]).await;
        assert_eq!(code, 0, "{out}");
        hub.eventually("the film is ready", || async { hub.queue(&reader).await.iter().filter(|i| i["state"] == "ready").count() == ready }).await;
    }
    // a four-slice CT series, then a CR study (three series) of the same patient: the prior
    let dd = "pydicom/test_files/dicomdirtests/77654033";
    let ct: Vec<_> = ["17106", "17136", "17166", "17196"].iter().map(|f| data(&format!("{dd}/CT2/{f}"))).collect();
    let (code, out) = hub.storescu("MODA", &[], &ct).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the CT is ready", || async { hub.queue(&reader).await.iter().filter(|i| i["state"] == "ready").count() == 3 }).await;
    let cr = [data(&format!("{dd}/CR1/6154")), data(&format!("{dd}/CR2/6247")), data(&format!("{dd}/CR3/6278"))];
    let (code, out) = hub.storescu("MODA", &[], &cr).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = hub.storescu("MODA", &[], &[ecg.clone()]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the ECG is ready", || async { hub.queue(&ecg_reader).await.iter().any(|i| i["state"] == "ready") }).await;
    // the technician's folder: two DICOM files and one that is not
    let upload = dir.path().join("from-the-clinic");
    std::fs::create_dir_all(upload.join("series1")).unwrap();
    std::fs::copy(data("pydicom/test_files/MR_small.dcm"), upload.join("series1/IM0001")).unwrap();
    std::fs::copy(data("pydicom/test_files/CT_small.dcm"), upload.join("IM0002.dcm")).unwrap();
    std::fs::write(upload.join("readme.txt"), "scanned request form, not an image\n").unwrap();
    let truncated = dir.path().join("truncated.dcm");
    std::fs::write(&truncated, &std::fs::read(data("pydicom/test_files/CT_small.dcm")).unwrap()[..3000]).unwrap();

    // a page of another origin on the same host (another port: same-site, so the browser
    // still sends the SameSite=Strict cookie) that tries to make the signed-in reader claim
    // work and log out, by fetch and by a form
    let evil_html = format!(
        r#"<!doctype html><title>evil</title><form id=f method=post action="{base}/api/worklist/next"></form>
<script>
fetch("{base}/api/worklist/next", {{ method: "POST", credentials: "include", mode: "no-cors" }})
  .then(() => fetch("{base}/api/logout", {{ method: "POST", credentials: "include", mode: "no-cors" }}))
  .catch(() => null)
  .then(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script>"#,
        base = hub.base
    );
    let evil = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(evil_html) }));
    let evil_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}/", evil_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(evil_listener, evil).await.unwrap() });

    let shots = root().join("target/browser-shots");
    let _ = std::fs::remove_dir_all(&shots);
    let cred = |u: &(String, String)| json!([u.0, u.1]);
    let config = json!({
        "base": hub.base, "shots": shots, "evil": evil_url,
        "certFingerprint": "AB:".repeat(31) + "AB",
        "reader": cred(&reader), "ecgReader": cred(&ecg_reader), "referrerA": cred(&ref_a), "referrerB": cred(&ref_b),
        "technician": cred(&tech), "admin": cred(&admin),
        "impression": "胸部正位片未见明显异常。", "critical": "右侧气胸，肺压缩约50%", "filmPatientId": "9RG1",
        "series": { "slices": 4, "priorSeries": 3 },
        "ct": { "rows": 512, "cols": 512, "spacing": 0.478516 },
        "ecg": { "firstR": 0.4, "rr": 0.8 },
        "uploadDir": upload, "uploadCount": 3, "truncated": truncated, "notDicom": "readme.txt", "uploadPatientId": "4MR1",
    });
    let config_path = dir.path().join("browser.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = tokio::process::Command::new("node").arg(root().join("tests/browser/viewer.mjs")).arg(&config_path).output().await.expect("node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "browser test failed (screenshots in {}):\n{text}", shots.display());
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 15, "{text}");
    let critical = hub.get_json(&admin, "/api/critical").await;
    assert_eq!(critical[0]["finding"], "右侧气胸，肺压缩约50%", "{critical}");
    assert_eq!(critical[0]["acknowledged_by_name"], "doc-a", "acknowledged in the browser: {critical}");
    // what the browser did is what the server holds
    let stored = hub.get_json(&tech, "/api/site/studies").await;
    assert!(stored.as_array().unwrap().iter().any(|i| i["patient_id"] == "4MR1"), "{stored}");
    assert!(stored.as_array().unwrap().iter().any(|i| i["patient_id"] == "1CT1"), "{stored}");
    assert!(stored.as_array().unwrap().iter().any(|i| i["priority"] == "stat"), "{stored}");
    // what the admin screen changed is what the server holds
    let b = storage::sites::site_by_name(&hub.storage.db, "Township-B (乡镇乙)").await.unwrap().expect("renamed in the browser");
    assert_eq!(b.ae_titles, vec!["MODB".to_string()], "MODB2 removed in the browser");
    let bound = storage::sites::certificates_of(&hub.storage.db, b.id).await.unwrap();
    assert_eq!(bound.iter().map(|f| f.as_str().to_string()).collect::<Vec<_>>(), vec!["ab".repeat(32)], "bound in the browser");
    assert_eq!(hub.get(&("ecg1".into(), "reset in the browser 1".into()), "/api/worklist").await.status(), 200, "ecg1's password reset and enabled");
    assert_eq!(hub.get(&("doc-b".into(), "changed by doc-b 2".into()), "/api/reports").await.status(), 200, "doc-b's own change");
    hub.stop().await;
}

/// The ECG screens in Chromium (tests/browser/ecg.mjs): a technician uploads a cart's HL7
/// aECG (and a broken Philips file is refused with its reason); the ECG physician finds it
/// STAT, sees the patient's prior ECG under it on the same paper with both measurements and
/// the change, readhub's measurements beside the device's, dismisses one suggested critical
/// result and confirms the other, fills the ECG report form and signs; the referrer sees
/// the report and the critical result. Then the report's PDF and print page: the key
/// measurements and a lead II rhythm strip (pdftotext, and the rendered page's pixels).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_ecg_upload_serial_critical() {
    if !common::peer_present("READHUB_TEST_BROWSER", "Chromium with playwright-core") {
        return;
    }
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let ecg_reader = hub.user("ecg1", Role::Reader, Some("ecg")).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let referrer = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let dir = tempfile::tempdir().unwrap();
    let oracle = |args: &[&str]| {
        let out = std::process::Command::new(common::python()).arg(root().join("tests/peers/ecg_oracle.py")).args(args).output().unwrap();
        assert!(out.status.success(), "ecg_oracle.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // the patient's ECG of a month ago (HR 60), pushed by the cart as DICOM
    let prior = dir.path().join("prior.dcm");
    oracle(&["make-dicom", prior.to_str().unwrap(), "--hr", "60", "--id", "P-SERIAL", "--date", "20261101"]);
    let (code, out) = hub.storescu("MODA", &[], &[prior]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the prior ECG is on the worklist", || async { !hub.queue(&ecg_reader).await.is_empty() }).await;
    // today's: HR 35, and the cart says "Acute MI"
    let current = dir.path().join("current-aecg.xml");
    oracle(&["make-aecg", current.to_str().unwrap(), "--hr", "35", "--id", "P-SERIAL", "--statement", "Acute MI"]);
    let broken = dir.path().join("broken-philips.xml");
    std::fs::write(&broken, "<restingecgdata><documentinfo><documenttype>PhilipsECG</documenttype>").unwrap();

    let shots = root().join("target/browser-shots-ecg");
    let _ = std::fs::remove_dir_all(&shots);
    let cred = |u: &(String, String)| json!([u.0, u.1]);
    let config = json!({
        "base": hub.base, "shots": shots,
        "technician": cred(&tech), "ecgReader": cred(&ecg_reader), "referrer": cred(&referrer),
        "ecgFile": current, "brokenFile": broken, "patientId": "P-SERIAL", "hr": 35, "priorHr": 60,
        "critical": "严重窦性心动过缓 35 次/分", "dismissReason": "设备误判，ST 段无抬高",
    });
    let config_path = dir.path().join("browser.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = tokio::process::Command::new("node").arg(root().join("tests/browser/ecg.mjs")).arg(&config_path).output().await.expect("node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "browser test failed (screenshots in {}):\n{text}", shots.display());
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 5, "{text}");

    // what the browser did is what the server holds
    let critical = hub.get_json(&referrer, "/api/critical").await;
    assert_eq!(critical.as_array().unwrap().len(), 1, "one confirmed, one dismissed: {critical}");
    assert_eq!(critical[0]["finding"], "严重窦性心动过缓 35 次/分");
    let report = hub.get_json(&referrer, "/api/reports").await[0].clone();
    let id = report["id"].as_i64().unwrap();
    let events = hub.get_json(&ecg_reader, &format!("/api/worklist/{}/events", report["item_id"])).await.to_string();
    assert!(events.contains("critical_dismissed") && events.contains("设备误判"), "{events}");

    // the PDF: an ECG report, its measurements, and a rhythm strip on the page
    let pdf = hub.get(&referrer, &format!("/api/reports/{id}/pdf")).await.bytes().await.unwrap().to_vec();
    let (text, _, _) = pdf_inspect(&pdf);
    for want in ["心电图诊断报告", "心电图测量 ECG measurements", "心率 HR", "QTc", "II 25 mm/s 10 mm/mV", "心电图诊断 ECG diagnosis", "窦性心动过缓"] {
        assert!(text.contains(want), "the PDF lacks {want:?}:\n{text}");
    }
    let hr_line = text.lines().find(|l| l.contains("心率 HR")).unwrap();
    let hr: f64 = hr_line.split("心率 HR:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((hr - 35.0).abs() <= 2.0, "{hr_line}");
    // rendered (poppler), the strip is there: a band of pink grid with a black trace on it
    let png = dir.path().join("page");
    std::fs::write(dir.path().join("r.pdf"), &pdf).unwrap();
    let out = std::process::Command::new("pdftoppm").args(["-png", "-r", "72", "-f", "1", "-l", "1", "-singlefile"]).arg(dir.path().join("r.pdf")).arg(&png).output().expect("pdftoppm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(dir.path().join("page.png")).unwrap().to_rgb8();
    let (mut pink, mut dark_in_band) = (0, 0);
    let rows_with_pink: Vec<u32> = (0..img.height()).filter(|y| (0..img.width()).filter(|x| { let p = img.get_pixel(*x, *y).0; p[0] > 200 && p[1] < 215 && p[2] < 215 && p[0] as i32 - p[1] as i32 > 25 }).count() > 200).collect();
    assert!(rows_with_pink.len() >= 10, "no ECG grid on the rendered page");
    let (top, bottom) = (rows_with_pink[0], *rows_with_pink.last().unwrap());
    for y in top..=bottom {
        for x in 0..img.width() {
            let p = img.get_pixel(x, y).0;
            if p[0] > 200 && p[1] < 215 && p[2] < 215 {
                pink += 1;
            }
            if p[0] < 80 && p[1] < 80 && p[2] < 80 {
                dark_in_band += 1;
            }
        }
    }
    assert!(bottom - top >= 70 && bottom - top <= 95, "the strip is 30 mm tall (85 pt): rows {top}..{bottom}");
    assert!(pink > 2000 && dark_in_band > 300, "grid {pink} px, trace {dark_in_band} px");
    // the print page too
    let page = hub.get(&referrer, &format!("/api/reports/{id}/print")).await.text().await.unwrap();
    assert!(page.contains("心电图诊断报告") && page.contains(r#"id="rhythm-strip""#) && page.contains(r#"id="ecg-measures""#), "{}", &page[..page.len().min(2000)]);
    hub.stop().await;
}

/// Orders in Chromium (tests/browser/orders.mjs): a technician registers an order on the
/// desk (登记) and a duplicate is refused; the modality takes it from the worklist and sends
/// the study; the radiologist sees the request beside the images.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_orders_register_and_read() {
    if !common::peer_present("READHUB_TEST_BROWSER", "Chromium with playwright-core") {
        return;
    }
    let hub = Hub::start(Backend::Sqlite).await;
    let site = hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    // the site's HIS is down: its report waits in the outbox
    let dead_hl7 = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    hub.worklist.set_site_outbound(site.id, &worklist::results::Outbound { hl7: Some(dead_hl7.clone()), ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shots = root().join("target/browser-shots-orders");
    let _ = std::fs::remove_dir_all(&shots);
    let cred = |u: &(String, String)| json!([u.0, u.1]);
    let config = json!({
        "base": hub.base, "shots": shots, "technician": cred(&tech), "reader": cred(&reader), "admin": cred(&admin), "deadHl7": dead_hl7,
        "accession": "DESK0001", "patientId": "P-DESK", "patientName": "李^梅",
        "history": "外伤后胸痛一天", "question": "排除肋骨骨折",
    });
    let config_path = dir.path().join("browser.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let run = |phase: &'static str| {
        let config_path = config_path.clone();
        async move {
            let out = tokio::process::Command::new("node").arg(root().join("tests/browser/orders.mjs")).arg(&config_path).arg(phase).output().await.expect("node");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            eprintln!("{text}");
            assert!(out.status.success(), "browser test ({phase}) failed:\n{text}");
            text
        }
    };
    let text = run("register").await;
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 2, "{text}");
    let order = hub.worklist.order_by_accession(site.id, "DESK0001").await.unwrap();
    assert_eq!((order.patient.name.as_str(), order.patient.sex.as_str(), order.priority), ("李^梅", "F", worklist::Priority::Urgent));
    assert!(order.source.starts_with("desk:tech-a"), "{}", order.source);
    // the modality: the worklist's Study Instance UID and accession number in the study
    let study = order.study_uid.clone();
    let ds = common::synthetic_sc_with_accession(Some(b"ISO_IR 192"), "李^梅".as_bytes(), "P-DESK", &study, &format!("{study}.1.1"), Some("DESK0001"));
    let file = dir.path().join("desk.dcm");
    std::fs::write(&file, common::part10(common::SC, &format!("{study}.1.1"), &ds)).unwrap();
    let (code, out) = hub.storescu("MODA", &[], &[file]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the study is ready", || async { hub.queue(&reader).await.iter().any(|i| i["patient_id"] == "P-DESK" && i["state"] == "ready") }).await;
    let text = run("read").await;
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 1, "{text}");
    // sign it: the report waits for the HIS that is down
    let item = hub.queue(&reader).await.iter().find(|i| i["patient_id"] == "P-DESK").unwrap()["id"].as_i64().unwrap();
    let (c, b) = hub.send(&reader, Method::PUT, &format!("/api/worklist/{item}/report"), Some(json!({"findings": "f", "impression": "未见骨折"}))).await;
    assert_eq!(c, 200, "{b}");
    let (c, b) = hub.send(&reader, Method::POST, &format!("/api/worklist/{item}/report/sign"), None).await;
    assert_eq!(c, 200, "{b}");
    let text = run("admin").await;
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 1, "{text}");
    hub.stop().await;
}

/// Full-fidelity frames in JPEG-LS lossless decoded by the viewer's WebAssembly codec
/// (tests/browser/lossless.mjs): the canvas is identical to the native path's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_lossless_frames_match_the_native_path() {
    if !common::peer_present("READHUB_TEST_BROWSER", "Chromium with playwright-core") {
        return;
    }
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let (code, out) = hub.storescu("MODA", &[], &[data("pydicom-data/RG1_UNCR.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the film is ready", || async { hub.queue(&reader).await.iter().any(|i| i["state"] == "ready") }).await;
    let dir = tempfile::tempdir().unwrap();
    let shots = root().join("target/browser-shots");
    let config = json!({ "base": hub.base, "shots": shots, "reader": [reader.0, reader.1] });
    let config_path = dir.path().join("browser.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = tokio::process::Command::new("node").arg(root().join("tests/browser/lossless.mjs")).arg(&config_path).output().await.expect("node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "browser test failed:\n{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 2, "{text}");
    hub.stop().await;
}
