//! Ingest: C-STORE from DCMTK, pynetdicom and a dicom-ul SCU sending exact bytes; what is
//! refused and why; durability of what is acknowledged.

use super::*;

on_both!(ingest_every_sample_syntax, byte_identity_duplicates_and_versions, charsets_and_name_search);
on_s3!(ingest_every_sample_syntax, byte_identity_duplicates_and_versions);

async fn ingest_every_sample_syntax(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    // (storescu flag proposing the file's own syntax, file, transfer syntax kept as received)
    let samples: &[(&str, &str, Option<&str>)] = &[
        ("-xv", "pydicom-data/RG1_J2KR.dcm", Some("1.2.840.10008.1.2.4.90")),
        ("-xw", "pydicom-data/RG1_J2KI.dcm", Some("1.2.840.10008.1.2.4.91")),
        ("-xt", "pydicom-data/emri_small_jpeg_ls_lossless.dcm", Some("1.2.840.10008.1.2.4.80")),
        ("-xs", "pydicom-data/JPEG-LL.dcm", Some("1.2.840.10008.1.2.4.70")),
        ("-xy", "pydicom-data/color3d_jpeg_baseline.dcm", Some("1.2.840.10008.1.2.4.50")),
        ("-xx", "pydicom/test_files/JPGExtended.dcm", Some("1.2.840.10008.1.2.4.51")),
        ("-xr", "pydicom-data/emri_small_RLE.dcm", Some("1.2.840.10008.1.2.5")),
        ("-xr", "debian-octave-dicom/US-PAL-8-10x-echo.dcm", Some("1.2.840.10008.1.2.5")),
        ("-xd", "pydicom/test_files/image_dfl.dcm", Some("1.2.840.10008.1.2.1.99")),
        ("-xb", "pydicom-data/OBXXXX1A_expb_2frame.dcm", Some("1.2.840.10008.1.2.2")),
        ("-xi", "pynetdicom/CTImageStorage.dcm", Some("1.2.840.10008.1.2")),
        ("-xe", "pydicom-data/RG1_UNCR.dcm", Some("1.2.840.10008.1.2.1")),
        ("-xe", "pydicom-data/eCT_Supplemental.dcm", Some("1.2.840.10008.1.2.1")),
        ("-xe", "pydicom-data/MR2_UNCR.dcm", Some("1.2.840.10008.1.2.1")),
        ("-xe", "pydicom-data/US1_UNCR.dcm", Some("1.2.840.10008.1.2.1")),
        ("-xe", "pydicom/test_files/waveform_ecg.dcm", Some("1.2.840.10008.1.2.1")),
    ];
    for (flag, file, _) in samples {
        let (code, out) = hub.storescu("MODA", &[flag], &[data(file)]).await;
        assert_eq!(code, 0, "storescu {flag} {file} failed:\n{out}");
    }
    for (_, file, ts) in samples {
        let (study, series, sop, pid) = sop_of(&data(file));
        storage::query::find_instance(
            &hub.storage.db,
            StudyFilter::All,
            &worklist::StudyUid::new(study.clone()),
            &worklist::SeriesUid::new(series.clone()),
            &worklist::SopInstanceUid::new(sop.clone()),
        )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{file} is not indexed"));
        if let Some(ts) = ts {
            // some samples share a SOP Instance UID across encodings: each is its own version
            use sqlx::Row;
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances WHERE sop_instance_uid = $1 AND transfer_syntax_uid = $2")
                .bind(&sop)
                .bind(*ts)
                .fetch_one(hub.storage.db.pool())
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1, "{file} was not stored in the syntax it was sent in");
        }
        let studies = storage::query::search_studies(
            &hub.storage.db,
            StudyFilter::All,
            &storage::query::StudyQuery { study_uids: vec![study.clone()], ..Default::default() },
        )
        .await
        .unwrap();
        assert_eq!(studies.len(), 1, "{file}");
        assert_eq!(studies[0].patient_id, pid, "{file}: Patient ID as dcmdump shows it");
    }
    // WADO-RS frames: the J2K lossless CR as stored, and decoded to exactly the pixels of
    // the uncompressed original
    let admin = hub.user("admin", Role::Admin, None).await;
    let frame_parts = |body: &[u8], boundary: &str| -> Vec<(String, Vec<u8>)> {
        let marker = format!("--{boundary}\r\n");
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(p) = rest.windows(marker.len()).position(|w| w == marker.as_bytes()) {
            rest = &rest[p + marker.len()..];
            let h_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let ct = String::from_utf8_lossy(&rest[..h_end]).to_string();
            rest = &rest[h_end + 4..];
            let end = rest.windows(boundary.len() + 4).position(|w| w == format!("\r\n--{boundary}").as_bytes()).unwrap();
            out.push((ct, rest[..end].to_vec()));
            rest = &rest[end + 2..];
        }
        out
    };
    // RG1_J2KR is RG1_UNCR losslessly compressed (its own SOP Instance UID)
    let (study, series, sop, _) = sop_of(&data("pydicom-data/RG1_J2KR.dcm"));
    let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1");
    let r = hub.get_accept(&admin, &url, "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*").await;
    assert_eq!(r.status(), 200);
    let boundary = r.headers()["content-type"].to_str().unwrap().split("boundary=").nth(1).unwrap().to_string();
    let parts = frame_parts(&r.bytes().await.unwrap(), &boundary);
    assert_eq!(parts.len(), 1);
    assert!(parts[0].0.contains("1.2.840.10008.1.2.4.90"), "{}", parts[0].0);
    assert_eq!(&parts[0].1[..4], &[0xFF, 0x4F, 0xFF, 0x51], "a JPEG 2000 codestream, as stored");
    // the same frame named 1,500 times (a 3 KB URL) is one frame, not 1,500 copies in memory
    let repeated = url.replace("/frames/1", &format!("/frames/{}", vec!["1"; 1500].join(",")));
    let r = hub.get_accept(&admin, &repeated, "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*").await;
    assert_eq!(r.status(), 200);
    let boundary = r.headers()["content-type"].to_str().unwrap().split("boundary=").nth(1).unwrap().to_string();
    assert_eq!(frame_parts(&r.bytes().await.unwrap(), &boundary).len(), 1);
    let r = hub.get(&admin, &url).await;
    let boundary = r.headers()["content-type"].to_str().unwrap().split("boundary=").nth(1).unwrap().to_string();
    let decoded = frame_parts(&r.bytes().await.unwrap(), &boundary);
    let original = dicom_object::open_file(data("pydicom-data/RG1_UNCR.dcm")).unwrap();
    let native = original.element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap().to_bytes().unwrap().into_owned();
    assert_eq!(decoded[0].1.len(), native.len());
    assert!(decoded[0].1 == native, "lossless J2K decodes to the original pixels");
    // over HTTP compression (what browsers ask for): native pixels travel gzipped and
    // arrive the same; the JPEG 2000 codestream as stored is not compressed again
    let gz = |accept: &'static str| {
        hub.http().get(format!("{}{url}", hub.base)).basic_auth(&admin.0, Some(&admin.1)).header("accept", accept).header("accept-encoding", "gzip").send()
    };
    let r = gz("multipart/related; type=\"application/octet-stream\"").await.unwrap();
    assert_eq!(r.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    let boundary = r.headers()["content-type"].to_str().unwrap().split("boundary=").nth(1).unwrap().to_string();
    let packed = r.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut unpacked).unwrap();
    assert!(frame_parts(&unpacked, &boundary)[0].1 == native, "gzip is transparent");
    // (a noisy 15-bit CR gains only ~13%: BENCHMARKS.md has the figures)
    assert!(packed.len() < native.len(), "16-bit CR pixels gzip to {} of {} bytes", packed.len(), native.len());
    let r = gz("multipart/related; type=\"application/octet-stream\"; transfer-syntax=*").await.unwrap();
    assert!(r.headers().get("content-encoding").is_none(), "a JPEG 2000 frame is not gzipped again");
    assert_eq!(&r.bytes().await.unwrap()[..2], b"--");
    // the whole instance, transcoded on request to explicit VR little endian
    let inst_url = url.replace("/frames/1", "");
    let r = hub.get_accept(&admin, &inst_url, "application/dicom; transfer-syntax=1.2.840.10008.1.2.1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dicom; transfer-syntax=1.2.840.10008.1.2.1");
    let file = r.bytes().await.unwrap();
    let obj = dicom_object::from_reader(&file[128..]).unwrap();
    assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), "1.2.840.10008.1.2.1");
    assert!(obj.element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap().to_bytes().unwrap()[..] == native[..]);
    let r = hub.get_accept(&admin, &inst_url, "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50").await;
    assert_eq!(r.status(), 406, "lossy re-encoding is not offered");
    assert_eq!(hub.get(&admin, &url.replace("frames/1", "frames/2")).await.status(), 400);
    assert_eq!(hub.get(&admin, &url.replace("frames/1", "frames/0")).await.status(), 400);
    // a sample without a Study Instance UID is refused with a reason, not stored
    let (code, out) = hub.storescu("MODA", &["-v", "-xu"], &[data("pydicom/test_files/JPEGLSNearLossless_16.dcm")]).await;
    assert_eq!(code, 192, "storescu reports the refusal:\n{out}");
    assert!(out.contains("Error: CannotUnderstand"), "{out}");
    hub.stop().await;
}

async fn byte_identity_duplicates_and_versions(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let (class, sop, ts, bytes) = dataset_bytes(&data("pydicom-data/RG1_UNCR.dcm"));
    let port = hub.dimse_port;
    let (b1, c1, s1) = (bytes.clone(), class.clone(), sop.clone());
    let tsc = ts.clone();
    let results = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(&c1, &[&tsc])]).unwrap();
        let first = a.store(&c1, &s1, &b1).unwrap();
        let again = a.store(&c1, &s1, &b1).unwrap();
        let mut changed = b1.clone();
        let n = changed.len();
        changed[n - 1] ^= 0xFF; // one pixel byte differs
        let version2 = a.store(&c1, &s1, &changed).unwrap();
        a.release();
        (first, again, version2, changed)
    })
    .await
    .unwrap();
    assert_eq!(results.0.status, 0x0000, "{:?}", results.0);
    assert_eq!(results.1.status, 0x0000, "a byte-identical re-send succeeds: {:?}", results.1);
    assert_eq!(results.2.status, 0x0000, "different bytes are kept as a new version: {:?}", results.2);

    let (study, series, _, _) = sop_of(&data("pydicom-data/RG1_UNCR.dcm"));
    let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    // bare application/dicom: the current version, byte for byte as sent
    let r = hub.get_accept(&admin, &url, "application/dicom; transfer-syntax=*").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(strip_meta(&body), results.3, "retrieved data set differs from the one sent");
    // multipart/related (the WADO-RS default): one part, same bytes
    let r = hub.get(&admin, &url).await;
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/related; type=\"application/dicom\"; boundary="), "{ct}");
    let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
    let body = r.bytes().await.unwrap();
    let start = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let end_marker = format!("\r\n--{boundary}--\r\n");
    assert!(body.ends_with(end_marker.as_bytes()));
    assert_eq!(strip_meta(&body[start..body.len() - end_marker.len()]), results.3);
    // conditional GET
    let r = hub
        .http()
        .get(format!("{}{url}", hub.base))
        .basic_auth(&admin.0, Some(&admin.1))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // index: one current instance, two versions, and an audit trail of both decisions
    use sqlx::Row;
    let rows = sqlx::query("SELECT version, is_current FROM instances WHERE sop_instance_uid = $1 ORDER BY version")
        .bind(&sop)
        .fetch_all(hub.storage.db.pool())
        .await
        .unwrap();
    let v: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(v, vec![(1, 0), (2, 1)]);
    let decisions: Vec<String> = sqlx::query("SELECT decision FROM ingest_audit WHERE sop_instance_uid = $1 ORDER BY id")
        .bind(&sop)
        .fetch_all(hub.storage.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(decisions, vec!["duplicate", "new_version"]);
    let studies = hub.get_json(&admin, &format!("/dicom-web/studies?StudyInstanceUID={study}")).await;
    assert_eq!(studies[0]["00201208"]["Value"][0], json!(1), "versions do not count as instances");
    hub.stop().await;
}

async fn charsets_and_name_search(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Village-G", &["MODG"], Some("GBK")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let ref_a = hub.user("ref-a", Role::Referrer, Some("Township-A")).await;
    let mut iso2022 = b"Li^Si=\x1b$)A".to_vec();
    iso2022.extend(gbk("李^四"));
    let cases: Vec<(&str, Option<Vec<u8>>, Vec<u8>, &str)> = vec![
        ("MODA", Some(b"GB18030".to_vec()), encoding_rs::GB18030.encode("Zhang^San=张^三").0.into_owned(), "P1"),
        ("MODA", Some(b"\\ISO 2022 IR 58".to_vec()), iso2022, "P2"),
        ("MODG", None, gbk("王^五"), "P3"),
        ("MODG", Some(b"ISO_IR 100".to_vec()), gbk("赵^六"), "P4"),
        ("MODA", Some(b"ISO_IR 192".to_vec()), "钱^七".as_bytes().to_vec(), "P5"),
        ("MODG", None, gbk("孙^八"), "P1"),
    ];
    let port = hub.dimse_port;
    for (i, (ae, cs, name, pid)) in cases.into_iter().enumerate() {
        let study = format!("1.2.826.0.1.3680043.10.1.{}", i + 1);
        let sop = format!("1.2.826.0.1.3680043.10.2.{}", i + 1);
        let ds = synthetic_sc(cs.as_deref(), &name, pid, &study, &sop);
        let ae = ae.to_string();
        let r = tokio::task::spawn_blocking(move || {
            let mut a = scu::connect(port, &ae, &[(SC, &[EXPLICIT_LE])]).unwrap();
            let r = a.store(SC, &sop, &ds).unwrap();
            a.release();
            r
        })
        .await
        .unwrap();
        assert_eq!(r.status, 0, "{r:?}");
    }
    let names = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let pn = &s["00100010"]["Value"][0];
                (
                    pn["Alphabetic"].as_str().unwrap_or("").to_string(),
                    pn["Ideographic"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let q = |n: &str| format!("/dicom-web/studies?PatientName={}", url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>());
    assert_eq!(names(&hub.get_json(&admin, &q("张*")).await), vec![("Zhang^San".into(), "张^三".into())]);
    assert_eq!(names(&hub.get_json(&admin, &q("zhang*")).await), vec![("Zhang^San".into(), "张^三".into())]);
    assert_eq!(names(&hub.get_json(&admin, &q("Zhang^San=张^三")).await).len(), 1);
    assert_eq!(names(&hub.get_json(&admin, &q("李^四")).await), vec![("Li^Si".into(), "李^四".into())]);
    assert_eq!(names(&hub.get_json(&admin, &q("王*")).await), vec![("王^五".into(), "".into())]);
    assert_eq!(names(&hub.get_json(&admin, &q("赵*")).await), vec![("赵^六".into(), "".into())]);
    assert_eq!(names(&hub.get_json(&admin, &q("钱?七")).await), vec![("钱^七".into(), "".into())]);
    // a wildcard applies to the whole value too (PS3.4 C.2.2.2.4), so this matches across groups
    assert_eq!(names(&hub.get_json(&admin, &q("Zh*三")).await).len(), 1);
    assert_eq!(names(&hub.get_json(&admin, &q("三*")).await).len(), 0, "a group matches from its start");
    // the same Patient ID at two sites is two patients
    let p1 = hub.get_json(&admin, "/dicom-web/studies?PatientID=P1").await;
    let issuers: std::collections::BTreeSet<String> =
        p1.as_array().unwrap().iter().map(|s| s["00100021"]["Value"][0].as_str().unwrap().to_string()).collect();
    assert_eq!(issuers.len(), 2, "{p1}");
    let p1_a = hub.get_json(&ref_a, "/dicom-web/studies?PatientID=P1").await;
    assert_eq!(names(&p1_a), vec![("Zhang^San".into(), "张^三".into())]);
    // metadata carries the names as UTF-8, whatever the modality sent
    let meta = hub.get_json(&admin, "/dicom-web/studies/1.2.826.0.1.3680043.10.1.2/metadata").await;
    assert_eq!(meta[0]["00100010"]["Value"][0]["Ideographic"], "李^四", "{meta}");
    assert_eq!(meta[0]["00080005"]["Value"][0], "ISO_IR 192");
    let meta = hub.get_json(&admin, "/dicom-web/studies/1.2.826.0.1.3680043.10.1.4/metadata").await;
    assert_eq!(meta[0]["00100010"]["Value"][0]["Alphabetic"], "赵^六", "{meta}");
    assert_eq!(hub.get(&ref_a, "/dicom-web/studies/1.2.826.0.1.3680043.10.1.4/metadata").await.status(), 404, "another site's study");
    let r = hub.get(&admin, "/dicom-web/studies?StudyDate=2026-11").await;
    assert_eq!(r.status(), 400);
    let in_range = hub.get_json(&admin, "/dicom-web/studies?StudyDate=20261101-20261130").await;
    assert_eq!(in_range.as_array().unwrap().len(), 6);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn echo_and_unregistered_ae() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let ok = tokio::process::Command::new("echoscu")
        .args(["-aet", "MODA", "-aec", "READHUB", "127.0.0.1", &hub.dimse_port.to_string()])
        .output()
        .await
        .expect("echoscu (DCMTK)");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = tokio::process::Command::new("echoscu")
        .args(["-aet", "STRANGER", "-aec", "READHUB", "127.0.0.1", &hub.dimse_port.to_string()])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Calling AE Title Not Recognized"), "{err}");
    let (code, out) = hub.storescu("STRANGER", &[], &[data("pynetdicom/CTImageStorage.dcm")]).await;
    assert_ne!(code, 0, "{out}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_enrollment_registers_new_sites() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.open_enrollment = true).await;
    let (code, out) = hub.storescu("NEWCLINIC", &[], &[data("pynetdicom/CTImageStorage.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    let site = storage::sites::site_for_ae(&hub.storage.db, "NEWCLINIC").await.unwrap().expect("enrolled");
    assert_eq!(site.name, "NEWCLINIC");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_and_nothing_half_visible() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.max_instance_mb = 2).await;
    hub.site("Township-A", &["MODA"], None).await;
    let ct = dataset_bytes(&data("pynetdicom/CTImageStorage.dcm"));
    let truncated = dataset_bytes(&data("pydicom/test_files/MR_truncated.dcm"));
    let bomb = std::fs::read(data("pydicom/test_files/UN_sequence.dcm")).unwrap();
    let big = dataset_bytes(&data("pydicom-data/RG1_UNCR.dcm"));
    let port = hub.dimse_port;
    let out = tokio::task::spawn_blocking(move || {
        let mr = "1.2.840.10008.5.1.4.1.1.4";
        let cr = "1.2.840.10008.5.1.4.1.1.1";
        let mut a = scu::connect(
            port,
            "MODA",
            &[(&ct.0, &[EXPLICIT_LE]), (mr, &[EXPLICIT_LE]), (cr, &[EXPLICIT_LE]), (SC, &[EXPLICIT_LE])],
        )
        .unwrap();
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let r_garbage = a.store(&ct.0, &ct.1, &garbage).unwrap();
        let r_trunc = a.store(mr, &truncated.1, &truncated.3).unwrap();
        // the 674-byte file whose element declares 3.7 GB: refused before any allocation
        let bomb_ds = if &bomb[128..132] == b"DICM" { strip_meta(&bomb) } else { bomb.clone() };
        let r_bomb = a.store(SC, "1.2.3.4", &bomb_ds).unwrap();
        let r_mismatch = a.store(&ct.0, "1.2.826.0.1.3680043.10.99", &ct.3).unwrap();
        let r_big = a.store(cr, &big.1, &big.3).unwrap();
        let r_ok = a.store(&ct.0, &ct.1, &ct.3).unwrap();
        a.release();
        (r_garbage, r_trunc, r_bomb, r_mismatch, r_big, r_ok)
    })
    .await
    .unwrap();
    assert_eq!(out.0.status, 0xC000, "garbage: {:?}", out.0);
    assert!(out.0.comment.as_deref().unwrap_or("").contains("not valid DICOM"), "{:?}", out.0);
    assert_eq!(out.1.status, 0xC000, "truncated: {:?}", out.1);
    assert!(out.1.comment.as_deref().unwrap_or("").contains("truncated"), "{:?}", out.1);
    assert_eq!(out.2.status, 0xC000, "oversized declared length: {:?}", out.2);
    assert_eq!(out.3.status, 0xA900, "SOP Instance UID mismatch: {:?}", out.3);
    assert_eq!(out.4.status, 0xA700, "over the size limit: {:?}", out.4);
    assert_eq!(out.5.status, 0x0000, "the association keeps serving: {:?}", out.5);
    use sqlx::Row;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, 1, "only the valid instance is indexed");
    assert_eq!(object_files(hub.data_dir()), 1, "no blob of a refused instance is left behind");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negotiation_rejects_unknown_sop_class_and_syntax() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let port = hub.dimse_port;
    let accepted = tokio::task::spawn_blocking(move || {
        let rt_plan = "1.2.840.10008.5.1.4.1.1.481.5";
        let ct = "1.2.840.10008.5.1.4.1.1.2";
        let a = scu::connect(port, "MODA", &[(rt_plan, &[EXPLICIT_LE]), (ct, &["1.2.3.4.5.6"]), (ct, &[EXPLICIT_LE])]).unwrap();
        let r = (a.context(rt_plan), a.context(ct));
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(accepted.0, None, "an unknown SOP class is rejected in negotiation");
    assert_eq!(accepted.1.map(|c| c.1), Some(EXPLICIT_LE.to_string()), "only the supported syntax is accepted");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_and_aborted_peers() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.peer_timeout_secs = 2).await;
    hub.site("Township-A", &["MODA"], None).await;
    let port = hub.dimse_port;
    let ct = dataset_bytes(&data("pynetdicom/CTImageStorage.dcm"));
    let mr = dataset_bytes(&data("pydicom-data/MR2_UNCR.dcm"));
    let us = dataset_bytes(&data("pydicom-data/US1_UNCR.dcm"));
    let (ct2, mr2) = (ct.clone(), mr.clone());
    // A: one instance acknowledged, then half of the next, then silence
    let stalled = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(&ct2.0, &[EXPLICIT_LE]), (&mr2.0, &[EXPLICIT_LE])]).unwrap();
        let first = a.store(&ct2.0, &ct2.1, &ct2.3).unwrap();
        let (pc, _) = a.context(&mr2.0).unwrap();
        a.send_store(pc, &mr2.0, &mr2.1, &mr2.3[..mr2.3.len() / 2], false).unwrap();
        let started = std::time::Instant::now();
        let dropped = a.receive_fails();
        (first, dropped, started.elapsed())
    });
    // B, meanwhile, is not slowed down
    tokio::time::sleep(Duration::from_millis(300)).await;
    let us2 = us.clone();
    let other = tokio::task::spawn_blocking(move || {
        let mut b = scu::connect(port, "MODA", &[(&us2.0, &[EXPLICIT_LE])]).unwrap();
        let started = std::time::Instant::now();
        let r = b.store(&us2.0, &us2.1, &us2.3).unwrap();
        b.release();
        (r, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(other.0.status, 0);
    let (first, dropped, waited) = stalled.await.unwrap();
    assert_eq!(first.status, 0);
    assert!(dropped, "the stalled peer is aborted");
    assert!(waited >= Duration::from_secs(1), "aborted after the peer timeout, not at once ({waited:?})");
    // C: aborts mid-transfer
    let mr3 = mr.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = scu::connect(port, "MODA", &[(&mr3.0, &[EXPLICIT_LE])]).unwrap();
        let (pc, _) = c.context(&mr3.0).unwrap();
        c.send_store(pc, &mr3.0, &mr3.1, &mr3.3[..100_000], false).unwrap();
        c.abort();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    use sqlx::Row;
    let sops: Vec<String> = sqlx::query("SELECT sop_instance_uid FROM instances ORDER BY sop_instance_uid")
        .fetch_all(hub.storage.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected = vec![ct.1.clone(), us.1.clone()];
    expected.sort();
    assert_eq!(sops, expected, "acknowledged instances kept; the interrupted ones not indexed");
    assert_eq!(object_files(hub.data_dir()), 2, "no partial blob left");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pynetdicom_concurrent_associations() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["PYNET1", "PYNET2", "PYNET3", "PYNET4"], None).await;
    let files = [
        "pynetdicom/CTImageStorage.dcm",
        "pynetdicom/MRImageStorage_ExplicitVRBigEndian.dcm",
        "pynetdicom/MRImageStorage_JPG2000_Lossless.dcm",
        "pynetdicom/SCImageStorage_Deflated.dcm",
        "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
        "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm",
        "pydicom-data/US1_J2KR.dcm",
        "pydicom/test_files/waveform_ecg.dcm",
    ];
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pynetdicom_store.py");
    let out = tokio::process::Command::new(common::python())
        .arg(&script)
        .args(["--port", &hub.dimse_port.to_string(), "--associations", "4"])
        .args(files.iter().map(|f| data(f)))
        .output()
        .await
        .expect("python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pynetdicom sender failed (is the test venv set up?):\n{text}");
    assert_eq!(text.matches("status=0x0000").count(), files.len() * 4, "{text}");
    use sqlx::Row;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances WHERE is_current = 1").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, files.len() as i64, "each instance once, however many associations sent it");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sop_classes_without_samples_are_accepted_and_routed() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let ecg_reader = hub.user("ecg1", Role::Reader, Some("ecg")).await;
    let rad = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let pdf = {
        let mut e = common::elem(0x0042, 0x0011, "OB", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n");
        e.extend(common::elem(0x0042, 0x0012, "LO", b"application/pdf"));
        e
    };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("1.2.840.10008.5.1.4.1.1.1.1", "DX", vec![]),      // DX for presentation
        ("1.2.840.10008.5.1.4.1.1.1.1.1", "DX", vec![]),    // DX for processing
        ("1.2.840.10008.5.1.4.1.1.1.2", "MG", vec![]),      // mammography
        ("1.2.840.10008.5.1.4.1.1.9.1.2", "ECG", vec![]),   // general ECG
        ("1.2.840.10008.5.1.4.1.1.9.1.3", "ECG", vec![]),   // ambulatory ECG
        ("1.2.840.10008.5.1.4.1.1.104.1", "DOC", pdf),      // encapsulated PDF
        ("1.2.840.10008.5.1.4.1.1.7.2", "OT", vec![]),      // multi-frame grayscale byte SC
        ("1.2.840.10008.5.1.4.1.1.3.1", "US", vec![]),      // US multi-frame
    ];
    let port = hub.dimse_port;
    let statuses = tokio::task::spawn_blocking(move || {
        let contexts: Vec<(&str, &[&str])> = cases.iter().map(|(c, _, _)| (*c, &[EXPLICIT_LE][..])).collect();
        let mut a = scu::connect(port, "MODA", &contexts).unwrap();
        let mut out = Vec::new();
        for (i, (class, modality, extra)) in cases.iter().enumerate() {
            let study = format!("1.2.826.0.1.3680043.10.50.{i}");
            let sop = format!("1.2.826.0.1.3680043.10.51.{i}");
            let ds = synthetic(class, modality, &study, &sop, extra);
            out.push((class.to_string(), a.store(class, &sop, &ds).unwrap().status));
        }
        a.release();
        out
    })
    .await
    .unwrap();
    for (class, status) in &statuses {
        assert_eq!(*status, 0, "{class}");
    }
    hub.eventually("two ECGs in the ECG pool, six studies in imaging", || async {
        hub.queue(&ecg_reader).await.len() == 2 && hub.queue(&rad).await.len() == 6
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listed_transfer_syntax_is_accepted() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let port = hub.dimse_port;
    let syntaxes: Vec<&'static str> = dicom_gateway::syntaxes::TRANSFER_SYNTAXES.to_vec();
    let accepted = tokio::task::spawn_blocking(move || {
        syntaxes
            .iter()
            .map(|ts| {
                let a = scu::connect(port, "MODA", &[("1.2.840.10008.5.1.4.1.1.2", &[ts])]).unwrap();
                let got = a.context("1.2.840.10008.5.1.4.1.1.2").map(|c| c.1);
                a.release();
                (ts.to_string(), got)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(accepted.len(), 13);
    for (ts, got) in accepted {
        assert_eq!(got.as_deref(), Some(ts.as_str()), "{ts} must be accepted as proposed");
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_failure_answers_out_of_resources_and_indexes_nothing() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let objects = hub.data_dir().join("objects");
    // the object store breaks under the hub (as a full or failed disk would): its directory
    // is replaced by a file, so no object can be written
    std::fs::rename(&objects, hub.data_dir().join("objects.away")).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    let ct = dataset_bytes(&data("pynetdicom/CTImageStorage.dcm"));
    let port = hub.dimse_port;
    let ct2 = ct.clone();
    let failed = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(&ct2.0, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(&ct2.0, &ct2.1, &ct2.3).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(failed.status, 0xA700, "{failed:?}");
    use sqlx::Row;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, 0);
    // the disk comes back: the modality's retry succeeds
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(hub.data_dir().join("objects.away"), &objects).unwrap();
    let retried = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(&ct.0, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(&ct.0, &ct.1, &ct.3).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(retried.status, 0);
    hub.stop().await;
}

/// The modality's priority flag is read from the configured attribute (here, for the test,
/// Accession Number); an unknown attribute is refused at start with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_from_a_configured_attribute() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.priority_attribute = "0008,0050".into()).await;
    hub.site("Township-A", &["MODA"], None).await;
    let r1 = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let study = "1.2.826.0.1.3680043.10.9.801";
    send_sc_acc(&hub, "MODA", "P-PRIO", study, &format!("{study}.1"), Some("STAT")).await;
    let id = wait_ready(&hub, &r1, study, None).await;
    let item = hub.get_json(&r1, &format!("/api/worklist/{id}")).await["item"].clone();
    assert_eq!(item["priority"], "stat");
    assert_eq!(item["deadline_at"].as_i64().unwrap() - item["arrived_at"].as_i64().unwrap(), 30 * 60 * 1000);
    hub.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = readhub::Config { data_dir: dir.path().to_path_buf(), priority_attribute: "UrgencyOfTheClinic".into(), ..readhub::Config::default() };
    let err = format!("{:#}", readhub::open(&config).await.err().expect("refused"));
    assert!(err.contains("UrgencyOfTheClinic"), "{err}");
}

/// A secondary capture with `levels` sequences nested inside each other (undefined lengths),
/// as an attacker or a broken modality would send it.
pub(super) fn nested_sc(study: &str, sop: &str, levels: usize) -> Vec<u8> {
    use common::elem;
    let mut inner = elem(0x0008, 0x0100, "SH", b"T-D1100 ");
    for _ in 0..levels {
        let mut seq = vec![0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        seq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        seq.extend(inner);
        seq.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        inner = seq;
    }
    // the nested sequence (0040,A730) goes between the study's attributes and the image's
    let base = synthetic_sc(None, b"Nested^Deep", "NEST1", study, sop);
    let split = base.windows(4).position(|w| w == [0x28, 0x00, 0x02, 0x00]).expect("(0028,0002) in the data set");
    let mut d = base[..split].to_vec();
    d.extend(inner);
    d.extend_from_slice(&base[split..]);
    d
}

/// Sequences nested past the limit (64 levels by default; 1,300 took the process down) are
/// refused by C-STORE (0xC000, saying why) and by STOW-RS (a failed part), and the hub
/// answers afterwards. A nesting within the limit is stored and served, decoded included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_sequences_are_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let port = hub.dimse_port;
    let study = "1.2.826.0.1.3680043.8.498.72001";
    let (deep, deeper, fine) = (nested_sc(study, &format!("{study}.1"), 65), nested_sc(study, &format!("{study}.2"), 1300), nested_sc(study, &format!("{study}.3"), 20));
    let stow_deep = common::part10(SC, &format!("{study}.4"), &nested_sc(study, &format!("{study}.4"), 1300));
    let out = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = (
            a.store(SC, &format!("{study}.1"), &deep).unwrap(),
            a.store(SC, &format!("{study}.2"), &deeper).unwrap(),
            a.store(SC, &format!("{study}.3"), &fine).unwrap(),
        );
        a.release();
        r
    })
    .await
    .unwrap();
    for r in [&out.0, &out.1] {
        assert_eq!(r.status, 0xC000, "{r:?}");
        assert!(r.comment.as_deref().unwrap_or("").contains("nested more than 64 levels"), "{r:?}");
    }
    assert_eq!(out.2.status, 0, "20 levels are stored: {:?}", out.2);
    let parts = [("application/dicom", stow_deep)];
    let (status, v) = stow(&hub, &tech, &parts).await;
    assert_eq!(status, 409, "the only part was refused");
    let failed = &v["00081198"]["Value"][0];
    assert_eq!(failed["00081197"]["Value"][0], 0xC000);
    assert!(failed["00000902"]["Value"][0].as_str().unwrap().contains("nested more than 64"), "{v}");
    // still answering: C-ECHO and QIDO; the stored one is served decoded as well as stored
    let (ok, out) = echo(port, "MODA").await;
    assert!(ok, "C-ECHO after the attack: {out}");
    let found = hub.get_json(&admin, &format!("/dicom-web/studies/{study}/instances")).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "only the 20-level instance: {found}");
    let path = format!("/dicom-web/studies/{study}/series/{study}.1/instances/{study}.3");
    for accept in ["application/dicom; transfer-syntax=*", "application/dicom; transfer-syntax=1.2.840.10008.1.2"] {
        let r = hub.get_accept(&admin, &path, accept).await;
        assert_eq!(r.status(), 200, "{accept}");
    }
    hub.stop().await;
}

/// A configured limit above 128 levels is held at 128, the deepest readhub can open safely;
/// an instance nested 120 levels (stored under such a limit) is served as stored, decoded,
/// as metadata and rendered, without taking the process down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nesting_up_to_the_hard_limit_is_served() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.max_sequence_depth = 10_000).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let port = hub.dimse_port;
    let study = "1.2.826.0.1.3680043.8.498.72002";
    let (deep, deeper) = (nested_sc(study, &format!("{study}.1"), 120), nested_sc(study, &format!("{study}.2"), 1300));
    let (ok, refused) = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = (a.store(SC, &format!("{study}.1"), &deep).unwrap(), a.store(SC, &format!("{study}.2"), &deeper).unwrap());
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(ok.status, 0, "120 levels are within 128: {ok:?}");
    assert_eq!(refused.status, 0xC000, "{refused:?}");
    assert!(refused.comment.as_deref().unwrap_or("").contains("nested more than 128"), "{refused:?}");
    let path = format!("/dicom-web/studies/{study}/series/{study}.1/instances/{study}.1");
    for accept in ["application/dicom; transfer-syntax=*", "application/dicom; transfer-syntax=1.2.840.10008.1.2"] {
        assert_eq!(hub.get_accept(&admin, &path, accept).await.status(), 200, "{accept}");
    }
    assert_eq!(hub.get_accept(&admin, &format!("{path}/metadata"), "application/dicom+json").await.status(), 200);
    assert_eq!(hub.get_accept(&admin, &format!("{path}/rendered"), "image/jpeg").await.status(), 200);
    let (ok, out) = echo(port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// A command set with sequences nested 2,000 levels deep (found by fuzzing: dicom-object
/// recursed until the stack overflowed and the process aborted) ends the association; the
/// hub answers the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deeply_nested_command_set_ends_the_association() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let port = hub.dimse_port;
    let mut command = b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00".to_vec();
    for _ in 0..2000 {
        let mut seq = b"\x40\x00\x30\xa7\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff".to_vec();
        seq.extend(command);
        seq.extend_from_slice(b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00");
        command = seq;
    }
    let dropped = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let (pc, _) = a.context(SC).unwrap();
        let _ = a.send_command_fragment(pc, command, true);
        a.receive_fails()
    })
    .await
    .unwrap();
    assert!(dropped, "the association is aborted");
    let (ok, out) = echo(port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// DIMSE command fragments that never end (memory grew with them) end the association once
/// the command set passes 64 KiB; the hub answers the next association.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_command_fragments_end_the_association() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let port = hub.dimse_port;
    let dropped = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let (pc, _) = a.context(SC).unwrap();
        // 128 KiB of command fragments, none of them the last; the hub may cut us off midway
        for _ in 0..8 {
            if a.send_command_fragment(pc, vec![0u8; 16 * 1024], false).is_err() {
                break;
            }
        }
        // the hub aborts at once; without the limit it would wait for more (our read gives
        // up only after its 30 s timeout)
        let start = std::time::Instant::now();
        (a.receive_fails(), start.elapsed())
    })
    .await
    .unwrap();
    assert!(dropped.0 && dropped.1 < Duration::from_secs(20), "the hub aborts the association: {dropped:?}");
    let (ok, out) = echo(port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// `synthetic_sc` with other Rows, Columns and Pixel Data.
pub(super) fn sc_with_pixels(study: &str, sop: &str, rows: u16, columns: u16, pixels: &[u8]) -> Vec<u8> {
    let mut d = synthetic_sc(None, b"Pixels^Short", "PX1", study, sop);
    let at = |d: &Vec<u8>, tag: [u8; 4]| d.windows(4).position(|w| w == tag).unwrap();
    let r = at(&d, [0x28, 0x00, 0x10, 0x00]) + 8;
    d[r..r + 2].copy_from_slice(&rows.to_le_bytes());
    let c = at(&d, [0x28, 0x00, 0x11, 0x00]) + 8;
    d[c..c + 2].copy_from_slice(&columns.to_le_bytes());
    let p = at(&d, [0xE0, 0x7F, 0x10, 0x00]);
    d.truncate(p);
    d.extend(common::elem(0x7FE0, 0x0010, "OB", pixels));
    d
}

/// Native Pixel Data shorter or longer than the image geometry needs (a truncated film
/// re-encoded by the sender's toolkit; 10 KB declaring 8 GB) is refused with both lengths
/// named, by C-STORE and by STOW-RS; a whole one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pixel_data_shorter_or_longer_than_the_image_is_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let port = hub.dimse_port;
    let study = "1.2.826.0.1.3680043.8.498.73001";
    let cases = vec![
        (format!("{study}.1"), sc_with_pixels(study, &format!("{study}.1"), 4, 4, &[7; 10]), 0xC000u16, "holds 10 bytes"),
        (format!("{study}.2"), sc_with_pixels(study, &format!("{study}.2"), 4, 4, &[7; 20]), 0xC000, "holds 20 bytes"),
        (format!("{study}.3"), sc_with_pixels(study, &format!("{study}.3"), 65535, 65535, &[7; 10240]), 0xC000, "needs 4294836225"),
        (format!("{study}.4"), sc_with_pixels(study, &format!("{study}.4"), 4, 4, &[7; 16]), 0x0000, ""),
    ];
    let sent = cases.clone();
    let results = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r: Vec<_> = sent.iter().map(|(sop, data, ..)| a.store(SC, sop, data).unwrap()).collect();
        a.release();
        r
    })
    .await
    .unwrap();
    for ((sop, _, status, says), r) in cases.iter().zip(&results) {
        assert_eq!(r.status, *status, "{sop}: {r:?}");
        assert!(r.comment.as_deref().unwrap_or("").contains(says), "{sop}: {r:?}");
    }
    let short = common::part10(SC, &format!("{study}.5"), &sc_with_pixels(study, &format!("{study}.5"), 4, 4, &[7; 8]));
    let parts = [("application/dicom", short)];
    let (status, v) = stow(&hub, &tech, &parts).await;
    assert_eq!(status, 409);
    assert_eq!(v["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000, "{v}");
    use sqlx::Row;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert_eq!(n, 1, "only the whole film is indexed");
    hub.stop().await;
}


/// Silent TCP connections (no AE title needed) hold no association slot, are closed after
/// the request timeout, and the oldest make room when there are too many; a real C-ECHO is answered meanwhile. Beyond the slots, and
/// beyond one AE title's share, a request gets A-ASSOCIATE-RJ (local limit exceeded) at
/// once instead of no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn association_slots_are_for_modalities_that_ask() {
    let hub = Hub::start_with(Backend::Sqlite, |c| {
        c.max_associations = 3;
        c.max_associations_per_ae = 2;
        c.association_request_timeout_secs = 2;
    })
    .await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let port = hub.dimse_port;
    // 200 silent connections: more than the places for connections still to ask (64 here),
    // so the oldest are evicted, and a modality that asks at once still gets in
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let (ok, out) = echo(port, "MODA").await;
    assert!(ok, "a C-ECHO beside 200 silent connections: {out}");
    let (ok, out) = echo(port, "MODB").await;
    assert!(ok, "and another: {out}");
    // the silent ones are closed by the hub once the request timeout passes
    for s in &mut silent {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await.expect("closed by the hub");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    // a first PDU that is not an association request, or one declaring 1 MB: closed at once
    for bytes in [vec![0x04, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0], vec![0x01, 0, 0x00, 0x10, 0x00, 0x00]] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await.expect("closed at once, not after the timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "{bytes:?}: {n:?}");
    }
    // two associations of MODA: its share
    let held = tokio::task::spawn_blocking(move || {
        let a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let b = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        (a, b)
    })
    .await
    .unwrap();
    let (ok, out) = echo(port, "MODA").await;
    assert!(!ok && out.to_lowercase().contains("local limit exceeded"), "MODA's third association: {out}");
    // the last slot is MODB's
    let third = tokio::task::spawn_blocking(move || scu::connect(port, "MODB", &[(SC, &[EXPLICIT_LE])]).unwrap()).await.unwrap();
    let (ok, out) = echo(port, "MODB").await;
    assert!(!ok && out.to_lowercase().contains("local limit exceeded"), "every slot is taken: {out}");
    held.0.release();
    held.1.release();
    third.release();
    let (ok, out) = echo(port, "MODB").await;
    assert!(ok, "slots come back: {out}");
    hub.stop().await;
}

/// The staging file of an upload cut off by a crash is gone at the next start, not only
/// once it is ten minutes old.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staging_files_of_a_crash_are_removed_at_start() {
    let leftover = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = leftover.clone();
    let hub = Hub::start_with(Backend::Sqlite, move |c| {
        let dir = c.data_dir.join("objects/1/2026/12");
        std::fs::create_dir_all(&dir).unwrap();
        let staging = dir.join("0123abcd-cut-off.dcm#17");
        std::fs::write(&staging, vec![0u8; 4096]).unwrap();
        let kept = dir.join("0123abcd-whole.dcm");
        std::fs::write(&kept, b"an object, not a staging file").unwrap();
        *seen.lock().unwrap() = Some((staging, kept));
    })
    .await;
    let (staging, kept) = leftover.lock().unwrap().clone().unwrap();
    assert!(!staging.exists(), "the staging file is swept before the hub listens");
    assert!(kept.exists(), "objects are left alone");
    hub.stop().await;
}

/// An encapsulated (JPEG baseline) secondary capture of `frames` frames carrying
/// `fragments` fragments after its Basic Offset Table, as a Part-10 file.
fn encapsulated_sc(study: &str, sop: &str, frames: u32, fragments: usize) -> Vec<u8> {
    encapsulated_sc_with_table(study, sop, frames, fragments, &[])
}

/// [`encapsulated_sc`] with these Basic Offset Table entries (each fragment is 12 bytes).
pub(super) fn encapsulated_sc_with_table(study: &str, sop: &str, frames: u32, fragments: usize, table: &[u32]) -> Vec<u8> {
    let base = synthetic_sc(None, b"Frames^Missing", "FR1", study, sop);
    let p = base.windows(4).position(|w| w == [0xE0, 0x7F, 0x10, 0x00]).unwrap();
    // Number of Frames goes after (0028,0004) and before (0028,0010)
    let nf = base.windows(4).position(|w| w == [0x28, 0x00, 0x10, 0x00]).unwrap();
    let mut d = base[..nf].to_vec();
    d.extend(common::elem(0x0028, 0x0008, "IS", format!("{frames} ").as_bytes()));
    d.extend_from_slice(&base[nf..p]);
    d.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]); // the Basic Offset Table
    d.extend_from_slice(&(table.len() as u32 * 4).to_le_bytes());
    table.iter().for_each(|e| d.extend_from_slice(&e.to_le_bytes()));
    for _ in 0..fragments {
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xD9]);
    }
    d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    common::part10_in("1.2.840.10008.1.2.4.50", SC, sop, &d)
}

/// Encapsulated Pixel Data with fewer fragments than frames is missing frames: refused,
/// saying how many of each; one fragment per frame is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encapsulated_pixel_data_missing_frames_is_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let study = "1.2.826.0.1.3680043.8.498.74001";
    let parts = [
        ("application/dicom", encapsulated_sc(study, &format!("{study}.1"), 3, 2)),
        ("application/dicom", encapsulated_sc(study, &format!("{study}.2"), 3, 3)),
    ];
    let (status, v) = stow(&hub, &tech, &parts).await;
    assert_eq!(status, 202, "one stored, one refused");
    let failed = &v["00081198"]["Value"];
    assert_eq!(failed.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(failed[0]["00081155"]["Value"][0], format!("{study}.1"));
    assert_eq!(failed[0]["00081197"]["Value"][0], 0xC000);
    assert!(failed[0]["00000902"]["Value"][0].as_str().unwrap().contains("2 fragments for 3 frames"), "{v}");
    assert_eq!(v["00081199"]["Value"].as_array().unwrap().len(), 1, "{v}");
    hub.stop().await;
}

/// A Basic Offset Table must point at the start of a fragment, one entry per frame: one
/// pointing outside the data or into a fragment is refused with the reason; a good one is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_basic_offset_table_is_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let study = "1.2.826.0.1.3680043.8.498.74002";
    let sop = |n: u32| format!("{study}.{n}");
    let parts = [
        ("application/dicom", encapsulated_sc_with_table(study, &sop(1), 2, 2, &[0, 1_000_000])),
        ("application/dicom", encapsulated_sc_with_table(study, &sop(2), 2, 2, &[0, 4])),
        ("application/dicom", encapsulated_sc_with_table(study, &sop(3), 2, 2, &[0])),
        ("application/dicom", encapsulated_sc_with_table(study, &sop(4), 2, 2, &[0, 12])),
    ];
    let (status, v) = stow(&hub, &tech, &parts).await;
    assert_eq!(status, 202, "one stored, three refused: {v}");
    let failed = v["00081198"]["Value"].as_array().unwrap().clone();
    let reason = |n: u32| {
        let f = failed.iter().find(|f| f["00081155"]["Value"][0] == sop(n)).unwrap_or_else(|| panic!("{n} refused: {v}"));
        assert_eq!(f["00081197"]["Value"][0], 0xC000);
        f["00000902"]["Value"][0].as_str().unwrap().to_string()
    };
    assert!(reason(1).contains("points outside"), "{}", reason(1));
    assert!(reason(2).contains("inside a fragment"), "{}", reason(2));
    assert!(reason(3).contains("1 Basic Offset Table entries for 2 frames"), "{}", reason(3));
    assert_eq!(v["00081199"]["Value"][0]["00081155"]["Value"][0], sop(4), "{v}");
    let (ok, out) = echo(hub.dimse_port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// [`synthetic_sc`] in series `series` (not `{study}.1`).
fn sc_in_series(study: &str, series: &str, sop: &str) -> Vec<u8> {
    let d = synthetic_sc(None, b"Collide^Test", "COL1", study, sop);
    let p = d.windows(4).position(|w| w == [0x20, 0x00, 0x0E, 0x00]).expect("(0020,000E)");
    let len = usize::from(u16::from_le_bytes([d[p + 6], d[p + 7]]));
    let mut out = d[..p].to_vec();
    out.extend(common::elem(0x0020, 0x000E, "UI", series.as_bytes()));
    out.extend_from_slice(&d[p + 8 + len..]);
    out
}

/// One site cannot add images to another site's study: an instance whose Study, Series or
/// SOP Instance UID already belongs to another site is refused (C-STORE 0xA900 and a STOW
/// failure, saying which UID), the original study is unchanged, and the admins (only they)
/// get an alert naming both sites. The owner still adds to its own study.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_sites_uids_are_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let tech_b = hub.user("tech-b", Role::Technician, Some("Township-B")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let port = hub.dimse_port;
    let a_study = "1.2.826.0.1.3680043.8.498.78001";
    let b_study = "1.2.826.0.1.3680043.8.498.78002";
    let stores: Vec<(&str, String, Vec<u8>)> = vec![
        ("MODA", format!("{a_study}.1.1"), sc_in_series(a_study, &format!("{a_study}.1"), &format!("{a_study}.1.1"))),
        // B: A's study UID, A's series UID in B's own study, A's SOP Instance UID in B's study
        ("MODB", format!("{a_study}.9.1"), sc_in_series(a_study, &format!("{a_study}.9"), &format!("{a_study}.9.1"))),
        ("MODB", format!("{b_study}.1.1"), sc_in_series(b_study, &format!("{a_study}.1"), &format!("{b_study}.1.1"))),
        ("MODB", format!("{a_study}.1.1"), sc_in_series(b_study, &format!("{b_study}.2"), &format!("{a_study}.1.1"))),
        // A adds to its own study
        ("MODA", format!("{a_study}.1.2"), sc_in_series(a_study, &format!("{a_study}.1"), &format!("{a_study}.1.2"))),
    ];
    let results = tokio::task::spawn_blocking(move || {
        stores
            .into_iter()
            .map(|(ae, sop, data)| {
                let mut a = scu::connect(port, ae, &[(SC, &[EXPLICIT_LE])]).unwrap();
                let r = a.store(SC, &sop, &data).unwrap();
                a.release();
                r
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(results[0].status, 0, "{:?}", results[0]);
    for (r, what) in results[1..4].iter().zip(["Study Instance UID", "Series Instance UID", "SOP Instance UID"]) {
        assert_eq!(r.status, 0xA900, "{what}: {r:?}");
        assert!(r.comment.as_deref().unwrap_or("").starts_with(&format!("{what} is already used by another site")), "{r:?}");
    }
    assert_eq!(results[4].status, 0, "the owner adds to its own study: {:?}", results[4]);
    // by STOW too
    let sop = format!("{a_study}.8.1");
    let parts = [("application/dicom", common::part10(SC, &sop, &sc_in_series(a_study, &format!("{a_study}.8"), &sop)))];
    let (status, v) = stow(&hub, &tech_b, &parts).await;
    assert_eq!(status, 409, "{v}");
    let failed = &v["00081198"]["Value"][0];
    assert_eq!(failed["00081197"]["Value"][0], 0xA900);
    assert!(failed["00000902"]["Value"][0].as_str().unwrap().starts_with("Study Instance UID is already used"), "{v}");
    // A's study holds A's two instances, nothing of B's
    let found = hub.get_json(&admin, &format!("/dicom-web/studies/{a_study}/instances")).await;
    let sops: Vec<&str> = found.as_array().unwrap().iter().map(|i| i["00080018"]["Value"][0].as_str().unwrap()).collect();
    assert_eq!(sops.len(), 2, "{sops:?}");
    assert!(sops.iter().all(|s| s.starts_with(&format!("{a_study}.1."))), "{sops:?}");
    // the admins are alerted, naming both sites; B's technician is not shown A's name
    let mut alerts = Value::Null;
    for _ in 0..100 {
        alerts = hub.get_json(&admin, "/api/alerts").await;
        if alerts.as_array().unwrap().iter().filter(|a| a["kind"] == "uid_collision").count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let collisions: Vec<&Value> = alerts.as_array().unwrap().iter().filter(|a| a["kind"] == "uid_collision").collect();
    assert_eq!(collisions.len(), 4, "one alert per refused instance: {alerts}");
    assert!(collisions.iter().all(|a| {
        let m = a["message"].as_str().unwrap();
        m.contains("Township-B") && m.contains("Township-A")
    }), "{alerts}");
    let theirs = hub.get_json(&tech_b, "/api/alerts").await;
    assert!(theirs.as_array().unwrap().iter().all(|a| a["kind"] != "uid_collision"), "{theirs}");
    hub.stop().await;
}

/// A Part-10 upload whose file meta group lies about its lengths (found by fuzzing: 500
/// bytes that made dicom-object's meta reader allocate 2.7 GB) is refused with the reason,
/// before any allocation of what it declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_file_meta_group_is_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/waveform/oom-edb1eec935d33749be0f8e472960a4eba4167b2a")).unwrap();
    let (status, v) = stow(&hub, &tech, &[("application/dicom", file)]).await;
    assert_eq!(status, 409, "{v}");
    let failed = &v["00081198"]["Value"][0];
    assert_eq!(failed["00081197"]["Value"][0], 0xC000);
    assert!(failed["00000902"]["Value"][0].as_str().unwrap().contains("the file meta group"), "{v}");
    let (ok, out) = echo(hub.dimse_port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// Storage Commitment (issue 14): a modality (pynetdicom) stores an instance, then asks with
/// N-ACTION for it, for a UID readhub never received, and for another site's instance. On
/// the same association readhub answers N-ACTION-RSP and then N-EVENT-REPORT: the stored one
/// committed, the other two failed with No Such Object Instance (0x0112): a site is never
/// told that another site's instance is held.
async fn storage_commitment(backend: Backend) {
    if !common::peer_present("READHUB_TEST_PYTHON", "pynetdicom") {
        return;
    }
    let hub = Hub::start(backend).await;
    hub.site("Township-1", &["MOD1"], None).await;
    hub.site("Township-2", &["MOD2"], None).await;
    let (code, out) = hub.storescu("MOD2", &[], &[data("pydicom/test_files/MR_small.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    let (_, _, other_site_sop, _) = sop_of(&data("pydicom/test_files/MR_small.dcm"));
    let file = data("pydicom/test_files/CT_small.dcm");
    let (_, _, sop, _) = sop_of(&file);
    let script = root().join("tests/peers/commitment_scu.py");
    // the modality, bounded in time: a hang is a failure, not a stuck test
    let modality = |extra: Vec<String>| {
        let mut c = tokio::process::Command::new(common::python());
        c.arg(&script).arg(hub.dimse_port.to_string()).arg("MOD1").arg(&file).args(extra).kill_on_drop(true);
        async move { tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("the pynetdicom modality hung").unwrap() }
    };
    let out = modality(vec!["1.2.826.0.1.3680043.10.14.999".into(), other_site_sop.clone()]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["store_status"], 0, "{r}");
    assert_eq!(r["action_status"], 0, "{r}");
    assert_eq!(r["report_received"], true, "the N-EVENT-REPORT came on the same association: {r}");
    assert_eq!(r["established_after"], true, "the association stayed up: {r}");
    assert_eq!(r["transaction"], r["sent_transaction"], "{r}");
    assert_eq!(r["event_type"], 2, "some failed: {r}");
    assert_eq!(r["committed"], json!([sop]), "{r}");
    assert_eq!(r["failed"], json!([["1.2.826.0.1.3680043.10.14.999", 0x0112], [other_site_sop, 0x0112]]), "{r}");
    // a malformed request (no Transaction UID): refused with Processing Failure, no report,
    // and the association and the hub carry on
    let out = modality(vec!["--broken".into()]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["action_status"], 0x0110, "{r}");
    assert_eq!(r["report_received"], false, "{r}");
    assert_eq!(r["established_after"], true, "{r}");
    assert!(echo(hub.dimse_port, "MOD1").await.0);
    // 1,500 references: the result is larger than the modality's PDU (pynetdicom's 16 KiB)
    // and goes in pieces
    let many: Vec<String> = (0..1500).map(|k| format!("1.2.826.0.1.3680043.10.14.{k}")).collect();
    let out = modality(many).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["report_received"], true, "{r}");
    assert_eq!(r["committed"].as_array().unwrap().len(), 1);
    assert_eq!(r["failed"].as_array().unwrap().len(), 1500);
    // the hub still answers
    assert!(echo(hub.dimse_port, "MOD1").await.0);
    hub.stop().await;
}

on_both!(storage_commitment);
