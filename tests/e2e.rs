//! End-to-end: the real readhub (in-process, ephemeral ports) driven by real peers (DCMTK,
//! pynetdicom, a dicom-ul SCU sending exact bytes) and a real HTTP client.

mod common;

use std::time::Duration;

use common::scu;
use common::{data, dataset_bytes, strip_meta, synthetic_sc, Backend, Hub, EXPLICIT_LE, SC};
use reqwest::Method;
use serde_json::{json, Value};
use storage::query::Scope;
use worklist::{Clock, Role};

/// `async fn NAME(Backend)` → tests `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if std::env::var("READHUB_TEST_PG_URL").is_err() {
                    eprintln!("skipped: READHUB_TEST_PG_URL is not set (the README's test command sets it)");
                    return;
                }
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both!(ingest_every_sample_syntax, byte_identity_duplicates_and_versions, charsets_and_name_search, read_report_flow, stow_rs);
on_both!(sla_clocks_leases_and_supervision, routing_rules_and_fallback, quality_rejection_and_retake);
on_both!(two_level_signoff_addendum_and_correction, critical_result_chain, priors_templates_and_turnaround, auto_assign_to_on_duty_qualified_readers, directory_api);
on_both!(claim_next_under_contention);

fn sop_of(path: &std::path::Path) -> (String, String, String, String) {
    let obj = dicom_object::open_file(path).unwrap();
    let s = |t| {
        obj.element_opt(t).ok().flatten().map(|e| e.to_str().unwrap().trim_end_matches('\0').trim().to_string()).unwrap_or_default()
    };
    use dicom_dictionary_std::tags;
    (s(tags::STUDY_INSTANCE_UID), s(tags::SERIES_INSTANCE_UID), s(tags::SOP_INSTANCE_UID), s(tags::PATIENT_ID))
}

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
        storage::query::find_instance(&hub.storage.db, Scope::All, &study, &series, &sop)
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
            Scope::All,
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

fn gbk(s: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(s).0.into_owned()
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

async fn read_report_flow(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let readers: Vec<_> = futures::future::join_all((1..=4).map(|i| hub.user(Box::leak(format!("rad{i}").into_boxed_str()), Role::Reader, Some("imaging")))).await;
    let ecg_reader = hub.user("ecg1", Role::Reader, Some("ecg")).await;
    let ref_a = hub.user("ref-a", Role::Referrer, Some("Township-A")).await;
    let ref_b = hub.user("ref-b", Role::Referrer, Some("Township-B")).await;
    let tech_a = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let admin = hub.user("admin", Role::Admin, None).await;

    // unauthenticated callers get nothing
    for path in ["/api/worklist", "/api/reports", "/dicom-web/studies"] {
        let r = hub.http().get(format!("{}{path}", hub.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = hub.http().get(format!("{}/api/worklist", hub.base)).basic_auth("rad1", Some("wrong")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // a CR pushed over one association: receiving while it is open, ready after it ends
    let (class, sop, ts, bytes) = dataset_bytes(&data("pydicom-data/RG1_UNCR.dcm"));
    let port = hub.dimse_port;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let sender = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(&class, &[&ts])]).unwrap();
        let r = a.store(&class, &sop, &bytes).unwrap();
        rx.recv().unwrap(); // hold the association open until told
        a.release();
        r
    });
    let rad1 = readers[0].clone();
    hub.eventually("the CR appears as receiving", || async {
        hub.queue(&rad1).await.first().map(|i| i["state"] == "receiving").unwrap_or(false)
    })
    .await;
    let item = hub.queue(&rad1).await[0].clone();
    let id = item["id"].as_i64().unwrap();
    assert_eq!(item["site_name"], "Township-A");
    assert_eq!(item["modalities"], "CR");
    let (st, _) = hub.send(&rad1, Method::POST, &format!("/api/worklist/{id}/claim"), None).await;
    assert_eq!(st, 409, "still receiving: not claimable");
    tx.send(()).unwrap();
    assert_eq!(sender.await.unwrap().status, 0);
    hub.eventually("the CR becomes ready after the quiet period", || async {
        hub.queue(&rad1).await.first().map(|i| i["state"] == "ready").unwrap_or(false)
    })
    .await;

    // four readers claim at once: exactly one wins
    let claim_path = format!("/api/worklist/{id}/claim");
    let claims = futures::future::join_all(readers.iter().map(|r| hub.send(r, Method::POST, &claim_path, None))).await;
    let winners: Vec<usize> = claims.iter().enumerate().filter(|(_, (s, _))| *s == 200).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{claims:?}");
    assert!(claims.iter().filter(|(s, _)| *s == 409).count() == 3, "{claims:?}");
    let winner = readers[winners[0]].clone();
    let loser = readers[(winners[0] + 1) % 4].clone();
    // only the claimant can release; released work is back in the queue for anyone
    let (st, _) = hub.send(&loser, Method::POST, &format!("/api/worklist/{id}/release"), None).await;
    assert_eq!(st, 409);
    let (st, released) = hub.send(&winner, Method::POST, &format!("/api/worklist/{id}/release"), None).await;
    assert_eq!(st, 200, "{released}");
    assert_eq!(released["state"], "ready");
    let (st, _) = hub.send(&winner, Method::POST, &claim_path, None).await;
    assert_eq!(st, 200);
    let trail: Vec<String> = hub.worklist.events(id).await.unwrap().iter().map(|e| e.0.to_string()).collect();
    assert_eq!(trail, vec!["arrived", "routed", "ready", "claimed", "released", "claimed"], "every transition is recorded");
    let (st, _) = hub
        .send(&loser, Method::PUT, &format!("/api/worklist/{id}/report"), Some(json!({"findings": "x", "impression": "y"})))
        .await;
    assert_eq!(st, 409, "only the claimant writes the report");
    let (st, _) = hub.send(&winner, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
    assert_eq!(st, 409, "nothing to sign before a draft");
    let (st, draft) = hub
        .send(
            &winner,
            Method::PUT,
            &format!("/api/worklist/{id}/report"),
            Some(json!({"findings": "双肺纹理清晰，心影不大。", "impression": "胸部正位片未见明显异常。"})),
        )
        .await;
    assert_eq!(st, 200, "{draft}");
    assert_eq!(draft["status"], "draft");
    // a draft is not visible to the site
    assert_eq!(hub.get_json(&ref_a, "/api/reports").await, json!([]));
    let (st, signed) = hub.send(&winner, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
    assert_eq!(st, 200, "{signed}");
    assert_eq!(signed["status"], "final");
    let report_id = signed["id"].as_i64().unwrap();

    // the referrer of site A lists, reads and prints it; site B sees nothing of it
    let list = hub.get_json(&ref_a, "/api/reports").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["impression"], "胸部正位片未见明显异常。");
    assert!(list[0]["delivered_at"].is_null(), "unread until the site opens it");
    assert_eq!(list[0]["critical_count"], 0);
    assert_eq!(list[0]["patient_id"], item["patient_id"]);
    let page = hub.get(&ref_a, &format!("/api/reports/{report_id}/print")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("胸部正位片未见明显异常。") && html.contains("Township-A"), "{html}");
    assert_eq!(hub.get_json(&ref_b, "/api/reports").await, json!([]));
    assert_eq!(hub.get(&ref_b, &format!("/api/reports/{report_id}")).await.status(), 404);
    assert_eq!(hub.get(&ref_b, &format!("/api/reports/{report_id}/print")).await.status(), 404);
    // the server's PDF: A4, the Chinese impression extractable, the CJK font embedded as a subset
    let pdf = hub.get(&ref_a, &format!("/api/reports/{report_id}/pdf")).await;
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.unwrap();
    let (text, info, fonts) = pdf_inspect(&pdf);
    assert!(text.contains("胸部正位片未见明显异常。") && text.contains("双肺纹理清晰，心影不大。"), "{text}");
    assert!(text.contains("Township-A 影像诊断报告") && text.contains(item["patient_id"].as_str().unwrap()), "{text}");
    let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or_default().to_string();
    assert_eq!((field("Pages:").as_str(), field("Page size:").as_str()), ("1", "595.28 x 841.89 pts (A4)"), "{info}");
    assert!(fonts.lines().any(|l| l.contains("NotoSansCJK") && l.contains(" yes yes ")), "embedded subset: {fonts}");
    assert!(pdf.len() < 200_000, "a subset, not the 19 MB font: {} bytes", pdf.len());
    assert_eq!(hub.get(&ref_b, &format!("/api/reports/{report_id}/pdf")).await.status(), 404);
    // opened: no longer unread; the search finds it by patient ID (any case) and study date
    let pid = item["patient_id"].as_str().unwrap().to_lowercase();
    let found = hub.get_json(&ref_a, &format!("/api/reports?q={pid}")).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert!(found[0]["delivered_at"].is_i64(), "{found}");
    assert_eq!(hub.get_json(&ref_a, "/api/reports?q=no-such-patient").await, json!([]));
    assert_eq!(hub.get_json(&ref_a, "/api/reports?from=1900-01-01&to=1900-12-31").await, json!([]));
    assert_eq!(hub.get(&ref_a, "/api/reports?from=yesterday").await.status(), 400);
    // an admin searches every site's reports the same way
    assert_eq!(hub.get_json(&admin, &format!("/api/reports?q={pid}")).await.as_array().unwrap().len(), 1);
    assert_eq!(hub.get_json(&admin, "/api/reports?q=no-such-patient").await, json!([]));
    let seen_by_b = hub.get(&ref_b, "/dicom-web/studies").await;
    assert_eq!(seen_by_b.status(), 204, "site B finds no study of site A");
    let inst = hub.get_json(&admin, &format!("/api/worklist/{id}")).await["instances"][0].clone();
    let url = inst["retrieve_url"].as_str().unwrap().to_string();
    assert_eq!(hub.get(&ref_b, &url).await.status(), 404);
    assert_eq!(hub.get(&ref_a, &url).await.status(), 200);
    // readers of another pool cannot open the item
    assert_eq!(hub.get(&ecg_reader, &format!("/api/worklist/{id}")).await.status(), 404);

    // the technician sees what became of the study
    let mine = hub.get_json(&tech_a, "/api/site/studies").await;
    assert_eq!(mine[0]["state"], "reported");

    // the rendered image, in the file's window
    let r = hub.get(&winner, &format!("{}?accept=image/png&viewport=256,256", inst["rendered_url"].as_str().unwrap())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert!(png.width() <= 256 && png.height() == 256, "{}x{}", png.width(), png.height());

    // new images for a reported study flag it rather than opening a second item
    let study = item["study_instance_uid"].as_str().unwrap().to_string();
    let extra = synthetic_sc(None, b"CompressedSamples^RG1", item["patient_id"].as_str().unwrap(), &study, "1.2.826.0.1.3680043.10.9.1");
    let extra_ok = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(SC, "1.2.826.0.1.3680043.10.9.1", &extra).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(extra_ok.status, 0);
    let it = hub.get_json(&admin, &format!("/api/worklist/{id}")).await["item"].clone();
    assert_eq!(it["state"], "reported");
    assert_eq!(it["new_images_after_report"], true);
    assert_eq!(it["num_instances"], 2);
    assert_eq!(it["num_series"], 2, "the added instance opened a second series");
    assert_eq!(it["modalities"], "CR\\OT", "Modalities in Study is the union of its series");
    let queue = hub.queue(&winner).await;
    assert_eq!(queue.len(), 1, "still one item for the study");

    // an ECG goes to the ECG pool and renders on the standard grid
    let (code, out) = hub.storescu("MODA", &[], &[data("pydicom/test_files/waveform_ecg.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the ECG reaches the ECG pool", || async { hub.queue(&ecg_reader).await.len() == 1 }).await;
    assert!(hub.queue(&winner).await.iter().all(|i| i["modalities"] != "ECG"));
    let ecg_id = hub.queue(&ecg_reader).await[0]["id"].as_i64().unwrap();
    let ecg = hub.get_json(&ecg_reader, &format!("/api/worklist/{ecg_id}")).await;
    let r = hub.get(&ecg_reader, ecg["instances"][0]["rendered_url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    assert_eq!(svg.matches(r#"class="lead""#).count(), 13, "12 leads plus the lead II rhythm strip");
    for lead in ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"] {
        assert!(svg.contains(&format!(r#"class="lead">{lead}<"#)), "lead {lead} missing");
    }
    assert!(svg.contains("25 mm/s") && svg.contains("10 mm/mV"));
    // the same paper as PNG: red grid, black traces, the paper's size at 6 px/mm
    let r = hub.get_accept(&ecg_reader, ecg["instances"][0]["rendered_url"].as_str().unwrap(), "image/png").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgb8();
    let _ = png.save(std::env::temp_dir().join("readhub-e2e-ecg.png"));
    assert_eq!(png.width(), 270 * 6);
    let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| png.pixels().filter(|p| f(p)).count() as f64 / (png.width() * png.height()) as f64;
    let grid = count(&|p| p.0[0] > 200 && p.0[1] < 200 && p.0[2] < 200);
    let ink = count(&|p| p.0[0] < 90 && p.0[1] < 90 && p.0[2] < 90);
    assert!(grid > 0.02, "red grid covers {grid:.3} of the paper");
    assert!(ink > 0.005 && ink < 0.2, "traces and text cover {ink:.3} of the paper");
    // the decoded samples, in µV, match pydicom's own decode of the same file
    let inst = &ecg["instances"][0];
    let path = format!(
        "/api/waveforms/{}/{}/{}",
        inst["study_instance_uid"].as_str().unwrap(),
        inst["series_instance_uid"].as_str().unwrap(),
        inst["sop_instance_uid"].as_str().unwrap()
    );
    let wf = hub.get_json(&ecg_reader, &path).await;
    assert_eq!(wf["unit"], "uV");
    let channels = wf["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 12);
    assert_eq!(channels[1]["label"], "II");
    let ours: Vec<f64> = channels.iter().map(|c| c["samples_uv"].as_array().unwrap()[100].as_f64().unwrap()).collect();
    let script = r#"
import json, sys
from pydicom import dcmread
a = dcmread(sys.argv[1]).waveform_array(0)
print(json.dumps({"fs": 1, "row": [float(v) for v in a[100]], "n": a.shape[0]}))
"#;
    let out = tokio::process::Command::new(common::python())
        .args(["-c", script])
        .arg(data("pydicom/test_files/waveform_ecg.dcm"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(channels[0]["samples_uv"].as_array().unwrap().len() as u64, theirs["n"].as_u64().unwrap());
    for (a, b) in ours.iter().zip(theirs["row"].as_array().unwrap()) {
        assert!((a - b.as_f64().unwrap()).abs() < 0.01, "µV {a} vs pydicom {b}");
    }
    assert_eq!(hub.get(&ecg_reader, &format!("/api/waveforms/{study}/1.2.3/4.5")).await.status(), 404);
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

fn object_files(dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), n)
            } else {
                *n += 1
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("objects"), &mut n);
    n
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_cli_and_serve() {
    let bin = env!("CARGO_BIN_EXE_readhub");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new(bin);
        c.args(args).env("READHUB_DATA_DIR", dir.path()).env_remove("READHUB_DATABASE_URL");
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = run(&["site", "add", "Township-A", "--ae", "MODA", "--ae", "MODA2", "--charset-fallback", "GBK"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["site", "add", "Bad", "--ae", "WAY-TOO-LONG-AE-TITLE"], None);
    assert!(!ok && out.contains("AE title"), "{out}");
    let (ok, out) = run(&["site", "add", "Dup", "--ae", "MODA"], None);
    assert!(!ok && out.contains("already registered"), "{out}");
    let (ok, out) = run(&["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password\n"));
    assert!(ok, "{out}");
    let (ok, out) = run(&["user", "add", "ref1", "--role", "referrer", "--pool", "imaging", "--password-stdin"], Some("referrer-password\n"));
    assert!(!ok && out.contains("site"), "{out}");
    let (ok, out) = run(&["user", "add", "weak", "--role", "admin", "--password-stdin"], Some("short\n"));
    assert!(!ok && out.contains("at least"), "{out}");
    let (ok, out) = run(&["site", "list"], None);
    assert!(ok && out.contains("Township-A") && out.contains("MODA,MODA2") && out.contains("GBK"), "{out}");
    // pools, turnaround targets, a senior supervising reader
    let (ok, out) = run(&["pool", "add", "ct-specialists", "--kind", "imaging"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["pool", "sla", "ct-specialists", "--stat", "20"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["pool", "sla", "ct-specialists", "--stat", "0"], None);
    assert!(!ok && out.contains("out of range"), "{out}");
    let (ok, out) = run(&["pool", "list"], None);
    let line = out.lines().find(|l| l.contains("ct-specialists")).unwrap_or_default();
    assert!(ok && line.split_whitespace().collect::<Vec<_>>()[3..] == ["20", "120", "1440"], "{out}");
    let (ok, out) = run(&["user", "add", "chief", "--role", "reader", "--pool", "ct-specialists", "--seniority", "senior", "--supervisor", "--password-stdin"], Some("chief-password\n"));
    assert!(ok && out.contains("senior"), "{out}");

    // layering: a TOML file, overridden by the environment, overridden by flags
    let toml = dir.path().join("readhub.toml");
    std::fs::write(&toml, "ae_title = \"FROMFILE\"\nquiet_period_secs = 3\nhttp_addr = \"127.0.0.1:1\"\n").unwrap();
    let first_log_line = |args: Vec<&'static str>| {
        let toml = toml.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let mut child = tokio::process::Command::new(bin)
                .args(["--config"])
                .arg(&toml)
                .args(args)
                .env("READHUB_DATA_DIR", &dir)
                .env("READHUB_DICOM_ADDR", "127.0.0.1:0")
                .env("READHUB_HTTP_ADDR", "127.0.0.1:0")
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
            while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
                if line.contains("readhub listening") {
                    let _ = child.kill().await;
                    return line;
                }
            }
            panic!("serve never logged its addresses");
        }
    };
    let line = first_log_line(vec!["serve"]).await;
    assert!(line.contains("dimse.ae_title=FROMFILE"), "the file sets the AE title: {line}");
    let http_addr = line.split("http.addr=").nth(1).unwrap().split_whitespace().next().unwrap();
    assert_ne!(http_addr, "127.0.0.1:1", "the environment overrides the file's http_addr: {line}");
    let line = first_log_line(vec!["serve", "--ae-title", "FROMFLAG"]).await;
    assert!(line.contains("dimse.ae_title=FROMFLAG"), "a flag overrides the file: {line}");
    std::fs::write(&toml, "no_such_setting = 1\n").unwrap();
    let (ok, out) = run(&["--config", toml.to_str().unwrap(), "site", "list"], None);
    assert!(!ok && out.contains("invalid config file") && out.contains("no_such_setting"), "{out}");

    let mut serve = tokio::process::Command::new(bin)
        .args(["serve"])
        .env("READHUB_DATA_DIR", dir.path())
        .env("READHUB_DICOM_ADDR", "127.0.0.1:0")
        .env("READHUB_HTTP_ADDR", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let (mut http, mut admin_hint) = (None, false);
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        admin_hint |= line.contains("no admin account yet");
        if let Some(rest) = line.split("http.addr=").nth(1) {
            http = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let http = http.expect("serve logs the bound HTTP address");
    assert!(admin_hint, "a hub without an admin says how to create one");
    let r = reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&json!({"username": "rad1", "password": "reader-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let me = reqwest::Client::new().get(format!("http://{http}/api/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["role"], "reader");
    let bad = reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&json!({"username": "rad1", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    // SIGTERM: a clean stop
    let pid = serve.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), serve.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}


/// A minimal data set of any SOP class (test data), with optional extra elements.
fn synthetic(sop_class: &str, modality: &str, study: &str, sop: &str, extra: &[u8]) -> Vec<u8> {
    use common::elem;
    let mut d = Vec::new();
    d.extend(elem(0x0008, 0x0005, "CS", b"ISO_IR 192"));
    d.extend(elem(0x0008, 0x0016, "UI", sop_class.as_bytes()));
    d.extend(elem(0x0008, 0x0018, "UI", sop.as_bytes()));
    d.extend(elem(0x0008, 0x0060, "CS", modality.as_bytes()));
    d.extend(elem(0x0010, 0x0010, "PN", "Test^Patient".as_bytes()));
    d.extend(elem(0x0010, 0x0020, "LO", b"SYN1"));
    d.extend(elem(0x0020, 0x000D, "UI", study.as_bytes()));
    d.extend(elem(0x0020, 0x000E, "UI", format!("{study}.1").as_bytes()));
    d.extend_from_slice(extra);
    d
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

/// A `multipart/related; type="application/dicom"` body.
fn multipart(parts: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "readhub-test-7d3f9a";
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"), body)
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

/// Send one synthetic secondary capture of `study` (a new SOP Instance UID each call).
async fn send_sc(hub: &Hub, calling: &str, patient_id: &str, study: &str, sop: &str) {
    send_sc_acc(hub, calling, patient_id, study, sop, None).await
}

async fn send_sc_acc(hub: &Hub, calling: &str, patient_id: &str, study: &str, sop: &str, accession: Option<&str>) {
    let ds = common::synthetic_sc_with_accession(None, b"Retake^Test", patient_id, study, sop, accession);
    let (port, calling, sop) = (hub.dimse_port, calling.to_string(), sop.to_string());
    let r = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, &calling, &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(SC, &sop, &ds).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0);
}

const MIN: Duration = Duration::from_secs(60);

/// A senior reader's qualifications, supervising the pool or not.
fn senior_quals(supervisor: bool) -> worklist::directory::ReaderQualifications {
    worklist::directory::ReaderQualifications { seniority: worklist::Seniority::Senior, supervisor, ..Default::default() }
}

/// SLA targets, deadlines and their breach, claim leases, claim-next order, and the
/// supervisor's reassignment, on a hand-moved clock (no sleeping for minutes).
async fn sla_clocks_leases_and_supervision(backend: Backend) {
    let clock = worklist::ManualClock::new(storage::now_ms());
    let hub = Hub::start_clocked(backend, clock.clone(), |_| {}).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let r1 = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let r2 = hub.user("rad2", Role::Reader, Some("imaging")).await;
    let sup = hub.user("chief", Role::Reader, Some("imaging")).await;
    let chief = hub.worklist.user_by_name("chief").await.unwrap().unwrap();
    hub.worklist.set_qualifications(chief.id, &senior_quals(true)).await.unwrap();
    // the pool's own STAT target: 20 minutes
    let (code, v) = hub.send(&admin, reqwest::Method::PUT, "/api/admin/pools/imaging/sla", Some(json!({ "stat_minutes": 20 }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["stat_minutes"], 20);
    assert_eq!(v["routine_minutes"], 24 * 60, "default kept");
    let (code, _) = hub.send(&admin, reqwest::Method::PUT, "/api/admin/pools/imaging/sla", Some(json!({ "stat_minutes": 0 }))).await;
    assert_eq!(code, 422, "a zero target is refused");

    for f in ["pydicom/test_files/CT_small.dcm", "pydicom/test_files/MR_small.dcm"] {
        let (code, out) = hub.storescu("MODA", &[], &[data(f)]).await;
        assert_eq!(code, 0, "{out}");
    }
    // the gateway hands instances to the worklist asynchronously: the items must exist
    // before the clock moves, or their arrival would be stamped with a later time
    hub.eventually("both studies arrived", || async { hub.queue(&r1).await.len() == 2 }).await;
    let arrived = clock.now_ms();
    // past the quiet period (the associations' ends are noted asynchronously: keep moving)
    hub.eventually("both studies ready", || async {
        clock.advance(Duration::from_secs(2));
        hub.queue(&r1).await.iter().filter(|i| i["state"] == "ready").count() == 2
    })
    .await;
    let queue = hub.queue(&r1).await;
    for it in &queue {
        assert_eq!(it["priority"], "routine");
        assert_eq!(it["deadline_at"].as_i64().unwrap(), it["arrived_at"].as_i64().unwrap() + 24 * 3600 * 1000, "routine: 24 h");
    }
    // the technician flags the MR STAT: it moves to the top with a 20-minute deadline
    let mr = queue.iter().find(|i| i["modalities"] == "MR").unwrap()["id"].as_i64().unwrap();
    let (code, v) = hub.send(&tech, reqwest::Method::POST, &format!("/api/worklist/{mr}/priority"), Some(json!({ "priority": "stat" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deadline_at"].as_i64().unwrap(), v["arrived_at"].as_i64().unwrap() + 20 * 60 * 1000);
    assert_eq!(v["arrived_at"].as_i64().unwrap(), arrived, "arrival is stamped by the worklist's clock");
    assert_eq!(hub.queue(&r1).await[0]["id"], mr, "STAT first");
    let (code, _) = hub.send(&tech, reqwest::Method::POST, &format!("/api/worklist/{mr}/priority"), Some(json!({ "priority": "asap" }))).await;
    assert_eq!(code, 422);

    // claim next: the STAT one, under a 15-minute lease
    let (code, v) = hub.send(&r1, reqwest::Method::POST, "/api/worklist/next", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["id"], mr);
    assert_eq!(v["lease_expires_at"].as_i64().unwrap(), clock.now_ms() + 15 * 60 * 1000);
    clock.advance(10 * MIN);
    let (code, v) = hub.send(&r1, reqwest::Method::POST, &format!("/api/worklist/{mr}/renew"), None).await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = hub.send(&r2, reqwest::Method::POST, &format!("/api/worklist/{mr}/renew"), None).await;
    assert_eq!(code, 409, "only the claimant renews");
    // nobody may write the report of someone else's claim
    let (code, _) = hub.send(&r2, reqwest::Method::PUT, &format!("/api/worklist/{mr}/report"), Some(json!({ "impression": "x" }))).await;
    assert_eq!(code, 409);
    let (code, _) = hub.send(&r2, reqwest::Method::POST, &format!("/api/worklist/{mr}/report/sign"), None).await;
    assert_eq!(code, 409, "nor sign it");
    assert!(hub.worklist.report_for_item(mr).await.unwrap().is_none(), "nothing written");

    // the reader walks away: 16 minutes later the lease has lapsed, and at 26 minutes
    // from arrival the 20-minute STAT deadline is breached
    clock.advance(16 * MIN);
    let t = hub.worklist.sla_tick().await.unwrap();
    assert!(t.leases_expired <= 1 && t.breached <= 1, "{t:?}"); // the server's own tick may have been first
    let it = hub.get_json(&admin, &format!("/api/worklist/{mr}")).await["item"].clone();
    assert_eq!(it["state"], "ready", "an abandoned claim returns to the queue");
    assert!(it["breached_at"].as_i64().is_some());
    let events = hub.get_json(&admin, &format!("/api/worklist/{mr}/events")).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["arrived", "routed", "ready", "priority_changed", "claimed", "renewed", "lease_expired", "breached"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "breached").count(), 1, "a breach is recorded once");
    hub.worklist.sla_tick().await.unwrap();
    assert_eq!(hub.get_json(&admin, &format!("/api/worklist/{mr}/events")).await.as_array().unwrap().len(), events.as_array().unwrap().len());
    // the supervisor is alerted, a plain reader is not
    let alerts = hub.get_json(&sup, "/api/alerts").await;
    let breach = alerts.as_array().unwrap().iter().find(|a| a["kind"] == "sla_breach" && a["item_id"] == mr).expect("breach alert").clone();
    assert!(hub.get_json(&r1, "/api/alerts").await.as_array().unwrap().is_empty());
    let (code, v) = hub.send(&sup, reqwest::Method::POST, &format!("/api/alerts/{}/ack", breach["id"]), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["acknowledged_by"], chief.id);
    // a breached routine item goes above a fresh STAT one: give the CT 1 ms of deadline
    // by breaching it too, then check the order is breached-first, then priority
    let queue = hub.queue(&r1).await;
    assert_eq!(queue[0]["id"], mr, "the breached item leads the queue");

    // the supervisor reassigns; a plain reader may not
    let (code, _) = hub.send(&r1, reqwest::Method::POST, &format!("/api/worklist/{mr}/reassign"), Some(json!({ "reader": "rad2" }))).await;
    assert_eq!(code, 403);
    let (code, v) = hub.send(&sup, reqwest::Method::POST, &format!("/api/worklist/{mr}/reassign"), Some(json!({ "reader": "rad2" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "claimed");
    let rad2 = hub.worklist.user_by_name("rad2").await.unwrap().unwrap();
    assert_eq!(v["claimed_by"], rad2.id);
    let (code, _) = hub.send(&sup, reqwest::Method::POST, &format!("/api/worklist/{mr}/reassign"), Some(json!({ "reader": "tech-a" }))).await;
    assert_eq!(code, 422, "only to a reader of the pool");
    // claim next for r1 now gives the CT (the MR is taken)
    let (code, v) = hub.send(&r1, reqwest::Method::POST, "/api/worklist/next", None).await;
    assert_eq!(code, 200);
    assert_ne!(v["id"], mr);
    let (code, _) = hub.send(&r1, reqwest::Method::POST, "/api/worklist/next", None).await;
    assert_eq!(code, 204, "nothing left");
    hub.stop().await;
}

/// Routing rules from the configuration and the admin API: first match wins, the item
/// records the version and rule, nothing matched goes to the fallback pool with an alert,
/// an unknown pool is refused with the reason, an admin can re-route.
async fn routing_rules_and_fallback(backend: Backend) {
    use worklist::routing::Rule;
    // rules from the config are installed at start: the ECG room reads MR (a test rule)
    let hub = Hub::start_with(backend, |c| {
        c.routing_rules = vec![Rule { name: "mr-to-ecg".into(), modalities: vec!["MR".into()], pool: "ecg".into(), ..Default::default() }];
    })
    .await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let set = hub.get_json(&admin, "/api/admin/routing-rules").await;
    assert_eq!(set["version"], 1);
    assert_eq!(set["created_by"], "config");
    assert_eq!(set["rules"][0]["name"], "mr-to-ecg");

    // the admin adds a CT specialists pool and a new rule set
    let (code, v) = hub.send(&admin, reqwest::Method::POST, "/api/admin/pools", Some(json!({ "name": "ct-specialists", "kind": "imaging" }))).await;
    assert_eq!(code, 200, "{v}");
    let ct_pool = v["id"].as_i64().unwrap();
    let bad = json!([{ "name": "ct", "modalities": ["CT"], "pool": "no-such-pool" }, { "name": "x", "pool": "imaging", "priorities": ["soon"] }]);
    let (code, v) = hub.send(&admin, reqwest::Method::PUT, "/api/admin/routing-rules", Some(bad)).await;
    assert_eq!(code, 422, "{v}");
    let msg = v.to_string();
    assert!(msg.contains("no-such-pool") && msg.contains("soon"), "every problem is named: {msg}");
    assert_eq!(hub.get_json(&admin, "/api/admin/routing-rules").await["version"], 1, "nothing changed");
    let rules = json!([
        { "name": "ct", "modalities": ["CT"], "sites": ["Township-A"], "pool": "ct-specialists", "set_priority": "urgent" },
        { "name": "night-ecg", "modalities": ["ECG"], "hours": "20-8", "pool": "ecg" }
    ]);
    let (code, v) = hub.send(&admin, reqwest::Method::PUT, "/api/admin/routing-rules", Some(rules)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["version"], 2);

    for f in ["pydicom/test_files/CT_small.dcm", "pydicom/test_files/MR_small.dcm"] {
        let (code, out) = hub.storescu("MODA", &[], &[data(f)]).await;
        assert_eq!(code, 0, "{out}");
    }
    let imaging = hub.worklist.pool_by_name("imaging").await.unwrap();
    let all_items = || async {
        let mut v = Vec::new();
        for pool in [ct_pool, imaging.id] {
            v.extend(hub.get_json(&admin, &format!("/api/worklist?pool={pool}")).await.as_array().cloned().unwrap_or_default());
        }
        v
    };
    hub.eventually("both studies routed", || async { all_items().await.len() == 2 }).await;
    let items = all_items().await;
    let ct = items.iter().find(|i| i["modalities"] == "CT").unwrap();
    assert_eq!(ct["pool_id"], ct_pool);
    assert_eq!(ct["routed_by"], "v2:ct");
    assert_eq!(ct["priority"], "urgent", "the rule raised the priority");
    let mr = items.iter().find(|i| i["modalities"] == "MR").unwrap();
    assert_eq!(mr["routed_by"], "v2:fallback", "no rule of version 2 matches an MR");
    assert_eq!(mr["pool_id"], imaging.id, "unmatched imaging goes to the imaging pool");
    let alerts = hub.get_json(&admin, "/api/alerts").await;
    assert!(alerts.as_array().unwrap().iter().any(|a| a["kind"] == "unrouted" && a["item_id"] == mr["id"]), "{alerts}");
    // the admin re-routes the MR to the specialists
    let mr_id = mr["id"].as_i64().unwrap();
    let (code, v) = hub.send(&admin, reqwest::Method::POST, &format!("/api/worklist/{mr_id}/route"), Some(json!({ "pool": "ct-specialists" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["pool_id"], ct_pool);
    assert_eq!(v["routed_by"], "manual:admin");
    let (code, _) = hub.send(&admin, reqwest::Method::POST, &format!("/api/worklist/{mr_id}/route"), Some(json!({ "pool": "nowhere" }))).await;
    assert_eq!(code, 404);
    hub.stop().await;

    // a configuration naming an unknown pool does not start, and says why
    let dir = tempfile::tempdir().unwrap();
    let mut config = readhub::Config { data_dir: dir.path().to_path_buf(), ..readhub::Config::default() };
    if backend == Backend::Postgres {
        config.database_url = Some(common::pg_database().await.unwrap());
    }
    config.routing_rules = vec![Rule { name: "lost".into(), pool: "radiology-3".into(), ..Default::default() }];
    let err = readhub::open(&config).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("radiology-3") && text.contains("routing_rules"), "{text}");
}

/// A reader returns a study for a retake; the technician sees why; new images of the
/// study put it back in the queue.
async fn quality_rejection_and_retake(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let tech_b = hub.user("tech-b", Role::Technician, Some("Township-B")).await;
    let r1 = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let study = "1.2.826.0.1.3680043.10.9.77";
    send_sc(&hub, "MODA", "P-RETAKE", study, "1.2.826.0.1.3680043.10.9.77.1").await;
    hub.eventually("the study is ready", || async { hub.queue(&r1).await.iter().any(|i| i["state"] == "ready") }).await;
    let id = hub.queue(&r1).await[0]["id"].as_i64().unwrap();
    let (code, _) = hub.send(&r1, reqwest::Method::POST, &format!("/api/worklist/{id}/reject"), Some(json!({ "reason": "motion" }))).await;
    assert_eq!(code, 403, "claim first");
    let (code, _) = hub.send(&r1, reqwest::Method::POST, &format!("/api/worklist/{id}/claim"), None).await;
    assert_eq!(code, 200);
    let (code, v) = hub.send(&r1, reqwest::Method::POST, &format!("/api/worklist/{id}/reject"), Some(json!({ "reason": "blurry" }))).await;
    assert_eq!(code, 422, "{v}");
    let (code, v) = hub
        .send(&r1, reqwest::Method::POST, &format!("/api/worklist/{id}/reject"), Some(json!({ "reason": "motion", "note": "患者移动，请重拍" })))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "rejected");
    assert!(hub.queue(&r1).await.is_empty(), "a returned study leaves the queue");
    // the technician sees it, with the reason, and an alert; the other site sees nothing
    let mine = hub.get_json(&tech, "/api/site/studies").await;
    let it = mine.as_array().unwrap().iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(it["state"], "rejected");
    assert_eq!(it["rejected_reason"], "motion");
    assert_eq!(it["rejected_note"], "患者移动，请重拍");
    let alerts = hub.get_json(&tech, "/api/alerts").await;
    assert!(alerts.as_array().unwrap().iter().any(|a| a["kind"] == "quality_rejection" && a["item_id"] == id));
    assert!(hub.get_json(&tech_b, "/api/alerts").await.as_array().unwrap().is_empty());
    // the retake, pushed by the modality (storescu): a new image of the same study reopens
    // the item and queues it again
    let dir = tempfile::tempdir().unwrap();
    let retake = dir.path().join("retake.dcm");
    let sop = "1.2.826.0.1.3680043.10.9.77.2";
    std::fs::write(&retake, common::part10(SC, sop, &synthetic_sc(None, b"Retake^Test", "P-RETAKE", study, sop))).unwrap();
    let (code, out) = hub.storescu("MODA", &[], &[retake]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the retake is queued", || async { hub.queue(&r1).await.iter().any(|i| i["id"] == id && i["state"] == "ready") }).await;
    let events = hub.get_json(&tech, &format!("/api/worklist/{id}/events")).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let rejected = kinds.iter().position(|k| *k == "rejected").unwrap();
    let requeued = kinds.iter().position(|k| *k == "requeued").expect("requeued event");
    assert!(requeued > rejected, "{kinds:?}");

    // a retake as a new study under the same accession: queued, and linked to the returned one
    let old_study = "1.2.826.0.1.3680043.10.9.78";
    send_sc_acc(&hub, "MODA", "P-ACC", old_study, &format!("{old_study}.1"), Some("ACC-778")).await;
    let old = wait_ready(&hub, &r1, old_study, None).await;
    assert_eq!(hub.send(&r1, Method::POST, &format!("/api/worklist/{old}/claim"), None).await.0, 200);
    let (code, _) = hub.send(&r1, Method::POST, &format!("/api/worklist/{old}/reject"), Some(json!({ "reason": "positioning" }))).await;
    assert_eq!(code, 200);
    let new_study = "1.2.826.0.1.3680043.10.9.79";
    send_sc_acc(&hub, "MODA", "P-ACC", new_study, &format!("{new_study}.1"), Some("ACC-778")).await;
    let new = wait_ready(&hub, &r1, new_study, None).await;
    let trail = |id: i64| {
        let tech = tech.clone();
        let hub = &hub;
        async move { hub.get_json(&tech, &format!("/api/worklist/{id}/events")).await.to_string() }
    };
    assert!(trail(new).await.contains(&format!("retake of item {old}")));
    assert!(trail(old).await.contains(&format!("retake arrived as item {new}")));
    hub.stop().await;
}

/// Two readhub processes on one PostgreSQL: readers on both claim from one queue until it
/// is empty; every item is claimed exactly once, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_postgres_queue() {
    let Some(db_url) = common::pg_database().await else {
        eprintln!("skipped: READHUB_TEST_PG_URL is not set (the README's test command sets it)");
        return;
    };
    let bin = env!("CARGO_BIN_EXE_readhub");
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new(bin);
        c.args(args).env("READHUB_DATA_DIR", dir.path()).env("READHUB_DATABASE_URL", &db_url);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cli(&["site", "add", "Township-A", "--ae", "MODA"], None);
    let readers = ["rad1", "rad2", "rad3", "rad4"];
    for r in readers {
        cli(&["user", "add", r, "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password\n"));
    }
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut procs = Vec::new();
    let mut bases = Vec::new();
    let mut dimse = Vec::new();
    for _ in 0..2 {
        let (d, h) = (free(), free());
        procs.push(
            tokio::process::Command::new(bin)
                .arg("serve")
                .env("READHUB_DATA_DIR", dir.path())
                .env("READHUB_DATABASE_URL", &db_url)
                .env("READHUB_DICOM_ADDR", format!("127.0.0.1:{d}"))
                .env("READHUB_HTTP_ADDR", format!("127.0.0.1:{h}"))
                .env("READHUB_QUIET_PERIOD_SECS", "1")
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
        bases.push(format!("http://127.0.0.1:{h}"));
        dimse.push(d);
    }
    let client = reqwest::Client::new();
    for base in &bases {
        for _ in 0..300 {
            if client.get(format!("{base}/")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // 24 studies, half through each process's gateway
    const N: usize = 24;
    for i in 0..N {
        let port = dimse[i % 2];
        let (study, sop) = (format!("1.2.826.0.1.3680043.10.9.300.{i}"), format!("1.2.826.0.1.3680043.10.9.300.{i}.1"));
        let ds = synthetic_sc(None, b"Two^Processes", &format!("P2P{i}"), &study, &sop);
        let r = tokio::task::spawn_blocking(move || {
            let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).unwrap();
            let r = a.store(SC, &sop, &ds).unwrap();
            a.release();
            r
        })
        .await
        .unwrap();
        assert_eq!(r.status, 0);
    }
    let ready = || async {
        let r = client.get(format!("{}/api/worklist", bases[0])).basic_auth("rad1", Some("reader-password")).send().await.unwrap();
        r.json::<Vec<Value>>().await.unwrap().iter().filter(|i| i["state"] == "ready").count()
    };
    for _ in 0..150 {
        if ready().await == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready().await, N, "every study is queued once");
    // four readers, two on each process, claim next until nothing is left
    let mut tasks = Vec::new();
    for (k, r) in readers.iter().enumerate() {
        let (base, r, client) = (bases[k % 2].clone(), r.to_string(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let resp = client.post(format!("{base}/api/worklist/next")).basic_auth(&r, Some("reader-password")).send().await.unwrap();
                match resp.status().as_u16() {
                    200 => {
                        let it: Value = resp.json().await.unwrap();
                        mine.push(it["id"].as_i64().unwrap());
                        // the reader is done with it: release would requeue it, so leave it claimed
                    }
                    204 => return mine,
                    s => panic!("claim next answered {s}: {}", resp.text().await.unwrap_or_default()),
                }
            }
        }));
    }
    each_claimed_once(tasks, N).await;
    for mut p in procs {
        let _ = p.kill().await;
    }
}

/// Claim and bring an item to the given reader; returns its id. The study is one synthetic
/// SC sent by `calling`.
async fn ready_item(hub: &Hub, calling: &str, reader: &(String, String), patient: &str, study: &str) -> i64 {
    send_sc(hub, calling, patient, study, &format!("{study}.1")).await;
    wait_ready(hub, reader, study, None).await
}

/// Wait until `study` is ready in the reader's queue (moving a manual clock past the quiet
/// period meanwhile); its item id.
async fn wait_ready(hub: &Hub, reader: &(String, String), study: &str, clock: Option<&worklist::ManualClock>) -> i64 {
    for _ in 0..150 {
        if let Some(c) = clock {
            c.advance(Duration::from_secs(2));
        }
        let q = hub.queue(reader).await;
        if let Some(i) = q.iter().find(|i| i["study_instance_uid"] == study && i["state"] == "ready") {
            return i["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("study {study} never became ready");
}

/// A junior writes, a senior edits, sends back, then signs; an addendum and a correction
/// follow. Referrers see only the current version, marked corrected; readers see history.
async fn two_level_signoff_addendum_and_correction(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let referrer = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let junior = hub.user("junior", Role::Reader, Some("imaging")).await;
    let senior = hub.user("senior", Role::Reader, Some("imaging")).await;
    let s = hub.worklist.user_by_name("senior").await.unwrap().unwrap();
    hub.worklist.set_qualifications(s.id, &senior_quals(false)).await.unwrap();
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/pools/imaging", Some(json!({ "two_level_signoff": true }))).await;
    assert_eq!(code, 200, "{v}");
    let id = ready_item(&hub, "MODA", &junior, "P-2L", "1.2.826.0.1.3680043.10.9.501").await;
    let path = |p: &str| format!("/api/worklist/{id}{p}");
    assert_eq!(hub.send(&junior, Method::POST, &path("/claim"), None).await.0, 200);
    let (code, _) = hub.send(&junior, Method::PUT, &path("/report"), Some(json!({ "findings": "双肺纹理增多。", "impression": "支气管炎？" }))).await;
    assert_eq!(code, 200);
    let (code, v) = hub.send(&junior, Method::POST, &path("/report/sign"), None).await;
    assert_eq!(code, 403, "a junior cannot sign in a two-level pool: {v}");
    let (code, v) = hub.send(&junior, Method::POST, &path("/report/submit"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "preliminary");
    assert!(v["submitted_at"].as_i64().is_some());
    assert_eq!(hub.get_json(&admin, &path("")).await["item"]["state"], "preliminary");
    // the senior sends it back with a note; the junior has it again as a draft
    let (code, _) = hub.send(&junior, Method::POST, &path("/report/send-back"), Some(json!({ "note": "x" }))).await;
    assert_eq!(code, 403, "only a senior sends back");
    let (code, v) = hub.send(&senior, Method::POST, &path("/report/send-back"), Some(json!({ "note": "请补充心影描述" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "draft");
    assert_eq!(v["returned_note"], "请补充心影描述");
    let junior_id = hub.worklist.user_by_name("junior").await.unwrap().unwrap().id;
    assert_eq!(hub.get_json(&admin, &path("")).await["item"]["claimed_by"], junior_id);
    let (code, _) = hub.send(&junior, Method::PUT, &path("/report"), Some(json!({ "findings": "双肺纹理增多，心影不大。", "impression": "支气管炎。" }))).await;
    assert_eq!(code, 200);
    assert_eq!(hub.send(&junior, Method::POST, &path("/report/submit"), None).await.0, 200);
    // the senior edits the impression and signs: author junior, signer senior
    let (code, _) = hub.send(&junior, Method::PUT, &path("/report/preliminary"), Some(json!({ "impression": "x" }))).await;
    assert_eq!(code, 403);
    let (code, v) = hub
        .send(&senior, Method::PUT, &path("/report/preliminary"), Some(json!({ "findings": "双肺纹理增多，心影不大。", "impression": "符合支气管炎表现。" })))
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = hub.send(&senior, Method::POST, &path("/report/sign"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "final");
    assert_eq!(v["author"], "junior");
    assert_eq!(v["signer"], "senior");
    assert!(v["signed_at"].as_i64().unwrap() >= v["submitted_at"].as_i64().unwrap());
    let first = v["id"].as_i64().unwrap();
    // final: no more edits, only an addendum or a correction (by a senior here)
    let (code, _) = hub.send(&junior, Method::PUT, &path("/report"), Some(json!({ "impression": "changed" }))).await;
    assert_eq!(code, 409, "a final report is not edited");
    let (code, _) = hub.send(&junior, Method::POST, &path("/report/addendum"), Some(json!({ "text": "x" }))).await;
    assert_eq!(code, 403, "juniors do not amend in a two-level pool");
    let (code, v) = hub.send(&senior, Method::POST, &path("/report/addendum"), Some(json!({ "text": "建议两周后复查。" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["addenda"][0]["text"], "建议两周后复查。");
    assert_eq!(v["addenda"][0]["author"], "senior");
    let (code, v) = hub.send(&senior, Method::POST, &path("/report/correct"), Some(json!({ "impression": "右下肺炎。", "findings": "右下肺片状影。" }))).await;
    assert_eq!(code, 422, "a correction needs a reason: {v}");
    let (code, v) = hub
        .send(&senior, Method::POST, &path("/report/correct"), Some(json!({ "findings": "右下肺片状影。", "impression": "右下肺炎。", "reason": "复阅发现漏诊" })))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "final");
    assert_eq!(v["corrected"], true);
    assert_eq!(v["supersedes"], first);
    assert_eq!(v["version"], 2);
    // referrers: exactly one current report, the corrected one; the old one is gone
    let list = hub.get_json(&referrer, "/api/reports").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["impression"], "右下肺炎。");
    assert_eq!(list[0]["corrected"], true);
    assert_eq!(hub.get(&referrer, &format!("/api/reports/{first}")).await.status(), 404, "the superseded version is not served to referrers");
    let print = hub.get(&referrer, &format!("/api/reports/{}/print", v["id"])).await.text().await.unwrap();
    assert!(print.contains("右下肺炎"), "the print page shows the current version");
    hub.get(&referrer, &format!("/api/reports/{}", v["id"])).await;
    let events = hub.get_json(&admin, &path("/events")).await;
    let delivered: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["kind"] == "delivered").collect();
    assert_eq!(delivered.len(), 1, "delivered once, when the site first opened it: {events}");
    // readers and admins: the whole history, with times to the minute or better
    let h = hub.get_json(&admin, &path("/report/history")).await;
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["status"], "superseded");
    assert_eq!(h[0]["addenda"].as_array().unwrap().len(), 1);
    assert!(h[0]["superseded_at"].as_i64().is_some());
    assert_eq!(h[1]["correction_reason"], "复阅发现漏诊");
    assert_eq!(hub.get(&referrer, &path("/report/history")).await.status(), 403);
    use sqlx::Row;
    let finals: i64 = sqlx::query("SELECT COUNT(*) FROM reports WHERE item_id = $1 AND status = 'final'")
        .bind(id)
        .fetch_one(hub.storage.db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(finals, 1, "two valid versions never coexist");
    hub.stop().await;
}

/// A critical result: the site is alerted and its webhook receives it, a referrer
/// acknowledges; another one left unacknowledged escalates to the supervisor.
async fn critical_result_chain(backend: Backend) {
    // the site's own system: a real HTTP server that records what it receives
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().await.push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let clock = worklist::ManualClock::new(storage::now_ms());
    let hub = Hub::start_clocked(backend, clock.clone(), |c| c.critical_ack_minutes = 15).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let doc = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let doc_b = hub.user("doc-b", Role::Referrer, Some("Township-B")).await;
    let r1 = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let sup = hub.user("chief", Role::Reader, Some("imaging")).await;
    let chief = hub.worklist.user_by_name("chief").await.unwrap().unwrap();
    hub.worklist.set_qualifications(chief.id, &senior_quals(true)).await.unwrap();
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-A/webhook", Some(json!({ "url": hook }))).await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-A/webhook", Some(json!({ "url": "ftp://x" }))).await;
    assert_eq!(code, 422);

    let mut ids = Vec::new();
    for (n, study) in ["1.2.826.0.1.3680043.10.9.601", "1.2.826.0.1.3680043.10.9.602"].iter().enumerate() {
        send_sc(&hub, "MODA", &format!("P-CRIT{n}"), study, &format!("{study}.1")).await;
        ids.push(wait_ready(&hub, &r1, study, Some(&clock)).await);
    }
    let (code, _) = hub.send(&doc, Method::POST, &format!("/api/worklist/{}/critical", ids[0]), Some(json!({ "finding": "x" }))).await;
    assert_eq!(code, 403, "referrers do not flag");
    let (code, c1) = hub.send(&r1, Method::POST, &format!("/api/worklist/{}/critical", ids[0]), Some(json!({ "finding": "右侧大量气胸" }))).await;
    assert_eq!(code, 200, "{c1}");
    assert_eq!(c1["notified_at"], c1["flagged_at"], "notified at once");
    let (code, c2) = hub.send(&r1, Method::POST, &format!("/api/worklist/{}/critical", ids[1]), Some(json!({ "finding": "主动脉夹层可能" }))).await;
    assert_eq!(code, 200, "{c2}");
    // the site is alerted in the app, and its system receives the webhook
    let alerts = hub.get_json(&doc, "/api/alerts").await;
    assert_eq!(alerts.as_array().unwrap().iter().filter(|a| a["kind"] == "critical_result").count(), 2, "{alerts}");
    for _ in 0..100 {
        if received.lock().await.len() >= 2 {
            break;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = received.lock().await.clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|v| v["event"] == "critical_result" && v["finding"] == "右侧大量气胸" && v["patient_id"] == "P-CRIT0"));
    // the other site sees nothing and cannot acknowledge
    assert!(hub.get_json(&doc_b, "/api/critical").await.as_array().unwrap().is_empty());
    assert_eq!(hub.send(&doc_b, Method::POST, &format!("/api/critical/{}/ack", c1["id"]), None).await.0, 404);
    assert_eq!(hub.send(&r1, Method::POST, &format!("/api/critical/{}/ack", c1["id"]), None).await.0, 403);
    // ten minutes later the referrer acknowledges the first
    clock.advance(10 * MIN);
    let (code, v) = hub.send(&doc, Method::POST, &format!("/api/critical/{}/ack", c1["id"]), None).await;
    assert_eq!(code, 200, "{v}");
    let doc_id = hub.worklist.user_by_name("doc-a").await.unwrap().unwrap().id;
    assert_eq!(v["acknowledged_by"], doc_id);
    assert_eq!(v["acknowledged_by_name"], "doc-a");
    // the second stays unacknowledged past 15 minutes: escalated once, to the supervisor
    clock.advance(6 * MIN);
    hub.worklist.sla_tick().await.unwrap();
    hub.worklist.sla_tick().await.unwrap();
    let list = hub.get_json(&admin, "/api/critical").await;
    let second = list.as_array().unwrap().iter().find(|c| c["id"] == c2["id"]).unwrap().clone();
    assert!(second["escalated_at"].as_i64().is_some(), "{second}");
    let first = list.as_array().unwrap().iter().find(|c| c["id"] == c1["id"]).unwrap().clone();
    assert!(first["escalated_at"].is_null(), "the acknowledged one is not escalated");
    let sup_alerts = hub.get_json(&sup, "/api/alerts").await;
    assert_eq!(sup_alerts.as_array().unwrap().iter().filter(|a| a["kind"] == "critical_unacknowledged").count(), 1, "{sup_alerts}");
    // the chain is in the item's trail
    let events = hub.get_json(&admin, &format!("/api/worklist/{}/events", ids[1])).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"critical_flagged") && kinds.contains(&"critical_notified") && kinds.contains(&"critical_escalated"), "{kinds:?}");
    hub.stop().await;
}

/// Priors of the same patient with their reports; templates for the study; turnaround
/// percentiles and volumes per site, pool, reader and day.
async fn priors_templates_and_turnaround(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let r1 = hub.user("rad1", Role::Reader, Some("imaging")).await;
    // two studies of one patient at A, and the same Patient ID at B (another patient)
    let first = ready_item(&hub, "MODA", &r1, "P-PRIOR", "1.2.826.0.1.3680043.10.9.701").await;
    assert_eq!(hub.send(&r1, Method::POST, &format!("/api/worklist/{first}/claim"), None).await.0, 200);
    hub.send(&r1, Method::PUT, &format!("/api/worklist/{first}/report"), Some(json!({ "impression": "第一次：未见异常。" }))).await;
    assert_eq!(hub.send(&r1, Method::POST, &format!("/api/worklist/{first}/report/sign"), None).await.0, 200);
    let second = ready_item(&hub, "MODA", &r1, "P-PRIOR", "1.2.826.0.1.3680043.10.9.702").await;
    ready_item(&hub, "MODB", &r1, "P-PRIOR", "1.2.826.0.1.3680043.10.9.703").await;
    let priors = hub.get_json(&r1, &format!("/api/worklist/{second}/priors")).await;
    let priors = priors.as_array().unwrap();
    assert_eq!(priors.len(), 1, "same site and issuer only: {priors:?}");
    assert_eq!(priors[0]["study_instance_uid"], "1.2.826.0.1.3680043.10.9.701");
    assert_eq!(priors[0]["impression"], "第一次：未见异常。");
    // templates: chest for a chest DX, ECG for ECG
    let t = hub.get_json(&r1, "/api/report-templates?modality=DX&body_part=CHEST").await;
    assert_eq!(t[0]["id"], "chest-pa-normal");
    assert!(t[0]["impression_zh"].as_str().unwrap().contains("未见明显异常"));
    assert!(!t[0]["impression_en"].as_str().unwrap().is_empty());
    let t = hub.get_json(&r1, "/api/report-templates?modality=ECG").await;
    assert_eq!(t[0]["id"], "ecg-12-lead-normal");
    // turnaround: one reported of three arrived at... two sites
    let today = chrono_today();
    let by_site = hub.get_json(&admin, &format!("/api/stats/turnaround?from={today}&to={today}&by=site")).await;
    let a = by_site.as_array().unwrap().iter().find(|g| g["group"] == "Township-A").unwrap().clone();
    assert_eq!(a["arrived"], 2);
    assert_eq!(a["reported"], 1);
    assert!(a["p50_minutes"].as_f64().unwrap() >= 0.0 && a["p90_minutes"].as_f64().unwrap() < 10.0, "{a}");
    let b = by_site.as_array().unwrap().iter().find(|g| g["group"] == "Township-B").unwrap().clone();
    assert_eq!((b["arrived"].as_u64(), b["reported"].as_u64()), (Some(1), Some(0)));
    assert!(b["p50_minutes"].is_null());
    let by_reader = hub.get_json(&admin, &format!("/api/stats/turnaround?from={today}&to={today}&by=reader")).await;
    assert_eq!(by_reader[0]["group"], "rad1");
    assert_eq!(by_reader[0]["reported"], 1);
    let by_day = hub.get_json(&admin, &format!("/api/stats/turnaround?from={today}&to={today}&by=day")).await;
    assert_eq!(by_day[0]["group"], today);
    assert_eq!(by_day[0]["arrived"], 3);
    let by_pool = hub.get_json(&admin, &format!("/api/stats/turnaround?from={today}&to={today}&by=pool")).await;
    assert_eq!(by_pool[0]["group"], "imaging");
    assert_eq!(hub.get(&admin, "/api/stats/turnaround?from=yesterday&to=2026-01-01").await.status(), 400);
    assert_eq!(hub.get(&r1, &format!("/api/stats/turnaround?from={today}&to={today}")).await.status(), 403);
    hub.stop().await;
}

/// Today's date in China (the hub's default local time), YYYY-MM-DD.
fn chrono_today() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive().to_string()
}

/// An auto-assigning pool pushes the next item to the least-loaded reader who is on duty
/// and qualified for the modality, one at a time.
async fn auto_assign_to_on_duty_qualified_readers(backend: Backend) {
    // 2026-11-23 10:00 in China
    let clock = worklist::ManualClock::new(1_795_399_200_000);
    let hub = Hub::start_clocked(backend, clock.clone(), |_| {}).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let cr_only = hub.user("cr-only", Role::Reader, Some("imaging")).await;
    let day = hub.user("day", Role::Reader, Some("imaging")).await;
    hub.user("night", Role::Reader, Some("imaging")).await;
    let path = |name: &str| format!("/api/admin/users/{name}/qualifications");
    assert_eq!(hub.send(&admin, Method::PUT, &path("cr-only"), Some(json!({ "modalities": ["CR"] }))).await.0, 200);
    assert_eq!(hub.send(&admin, Method::PUT, &path("day"), Some(json!({ "duty_hours": "8-17" }))).await.0, 200);
    let (code, v) = hub.send(&admin, Method::PUT, &path("night"), Some(json!({ "duty_hours": "20-8" }))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duty_hours"], "20-8");
    assert_eq!(hub.send(&admin, Method::PUT, &path("night"), Some(json!({ "duty_hours": "25-8" }))).await.0, 422);
    let (code, _) = hub.send(&admin, Method::PUT, "/api/admin/pools/imaging", Some(json!({ "auto_assign": true }))).await;
    assert_eq!(code, 200);
    for f in ["pydicom/test_files/CT_small.dcm", "pydicom/test_files/MR_small.dcm"] {
        let (code, out) = hub.storescu("MODA", &[], &[data(f)]).await;
        assert_eq!(code, 0, "{out}");
    }
    let day_id = hub.worklist.user_by_name("day").await.unwrap().unwrap().id;
    let night_id = hub.worklist.user_by_name("night").await.unwrap().unwrap().id;
    // at 10:00 only "day" is on duty and qualified for CT and MR: one item, pushed to them
    let mut claimed = Vec::new();
    for _ in 0..100 {
        clock.advance(Duration::from_secs(2));
        let queue = hub.queue(&day).await;
        claimed = queue.iter().filter(|i| i["state"] == "claimed").cloned().collect();
        if !claimed.is_empty() && queue.iter().any(|i| i["state"] == "ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(claimed.len(), 1, "one item at a time");
    assert_eq!(claimed[0]["claimed_by"], day_id);
    tokio::time::sleep(Duration::from_millis(1200)).await; // a few more ticks change nothing
    let queue = hub.queue(&day).await;
    assert_eq!(queue.iter().filter(|i| i["state"] == "claimed").count(), 1);
    let other = queue.iter().find(|i| i["state"] == "ready").expect("the other waits")["id"].as_i64().unwrap();
    let (code, v) = hub.send(&cr_only, Method::POST, &format!("/api/worklist/{other}/claim"), None).await;
    assert_eq!(code, 403, "not qualified for this modality: {v}");
    let (code, _) = hub.send(&cr_only, Method::POST, "/api/worklist/next", None).await;
    assert_eq!(code, 204, "nothing this reader may read");
    // evening: "day" finishes and goes off duty; the next item goes to "night"
    let first = claimed[0]["id"].as_i64().unwrap();
    hub.send(&day, Method::PUT, &format!("/api/worklist/{first}/report"), Some(json!({ "impression": "未见异常。" }))).await;
    assert_eq!(hub.send(&day, Method::POST, &format!("/api/worklist/{first}/report/sign"), None).await.0, 200);
    clock.advance(11 * 60 * MIN); // 21:00
    let mut holder = Value::Null;
    for _ in 0..50 {
        holder = hub.get_json(&admin, &format!("/api/worklist/{other}")).await["item"]["claimed_by"].clone();
        if !holder.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(holder, night_id, "pushed to the reader on night duty");
    let events = hub.get_json(&admin, &format!("/api/worklist/{other}/events")).await;
    assert!(events.as_array().unwrap().iter().any(|e| e["detail"].as_str().unwrap_or("").starts_with("auto-assigned to night")), "{events}");
    hub.stop().await;
}

/// The directory through the admin API: a site of a new consortium with its AE titles, a
/// pool, a senior supervising reader; bad requests change nothing.
async fn directory_api(backend: Backend) {
    let hub = Hub::start(backend).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let (code, v) = hub
        .send(&admin, Method::POST, "/api/admin/sites", Some(json!({ "name": "Village-7", "ae_titles": ["V7DR"], "consortium": "North", "charset_fallback": "GBK" })))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ae_titles"], json!(["V7DR"]));
    let (code, v) = hub.send(&admin, Method::POST, "/api/admin/sites", Some(json!({ "name": "Dup", "ae_titles": ["V7DR"] }))).await;
    assert!(code == 400 || code == 409, "an AE title belongs to one site: {code} {v}");
    let (code, v) = hub.send(&admin, Method::POST, "/api/admin/pools", Some(json!({ "name": "north-xray", "kind": "imaging", "consortium": "North" }))).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = hub
        .send(
            &admin,
            Method::POST,
            "/api/admin/users",
            Some(json!({ "username": "north-chief", "role": "reader", "pool": "north-xray", "password": "chief-password",
                         "seniority": "senior", "supervisor": true, "modalities": ["CR", "DX"], "duty_hours": "8-18" })),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!((v["seniority"].as_str(), v["supervisor"].as_bool()), (Some("senior"), Some(true)));
    assert_eq!(v["modalities"], json!(["CR", "DX"]));
    let (code, _) = hub
        .send(&admin, Method::POST, "/api/admin/users", Some(json!({ "username": "bad-hours", "role": "reader", "pool": "north-xray", "password": "reader-password", "duty_hours": "9-99" })))
        .await;
    assert_eq!(code, 422);
    let users = hub.get_json(&admin, "/api/admin/users").await;
    assert!(users.as_array().unwrap().iter().all(|u| u["username"] != "bad-hours"), "nothing half-made");
    let (code, _) = hub.send(&admin, Method::POST, "/api/admin/users", Some(json!({ "username": "t1", "role": "technician", "site": "Nowhere", "password": "tech-password" }))).await;
    assert_eq!(code, 422);
    let tech = hub.user("tech-x", Role::Technician, Some("Village-7")).await;
    assert_eq!(hub.get(&tech, "/api/admin/users").await.status(), 403);
    // the new site's modality can send at once
    let (code, out) = hub.storescu("V7DR", &[], &[data("pydicom/test_files/CT_small.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    hub.stop().await;
}

/// The web viewer in Chromium (tests/browser/viewer.mjs): a film pushed with storescu is on
/// the reader's worklist, claimed with N, rendered (canvas pixels checked, changed by a
/// window/level drag and by invert), signed; a length on a CT of known Pixel Spacing reads
/// the expected mm; a synthetic ECG of known rhythm shows 12 labelled leads and calipers
/// read its RR interval; the site's referrer sees, prints and gets the PDF, another site's
/// referrer does not; a technician's folder upload refuses exactly the file that is not
/// DICOM; the admin's dashboard. Screenshots go to target/browser-shots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_reads_films_and_ecgs() {
    if std::env::var("READHUB_TEST_BROWSER").is_err() {
        eprintln!("skipped: READHUB_TEST_BROWSER is not set (the README's test command installs Chromium and playwright-core and sets it)");
        return;
    }
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
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

    let shots = root().join("target/browser-shots");
    let _ = std::fs::remove_dir_all(&shots);
    let cred = |u: &(String, String)| json!([u.0, u.1]);
    let config = json!({
        "base": hub.base, "shots": shots,
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
    assert_eq!(text.lines().filter(|l| l.starts_with("ok   ")).count(), 11, "{text}");
    let critical = hub.get_json(&admin, "/api/critical").await;
    assert_eq!(critical[0]["finding"], "右侧气胸，肺压缩约50%", "{critical}");
    assert_eq!(critical[0]["acknowledged_by_name"], "doc-a", "acknowledged in the browser: {critical}");
    // what the browser did is what the server holds
    let stored = hub.get_json(&tech, "/api/site/studies").await;
    assert!(stored.as_array().unwrap().iter().any(|i| i["patient_id"] == "4MR1"), "{stored}");
    assert!(stored.as_array().unwrap().iter().any(|i| i["patient_id"] == "1CT1"), "{stored}");
    assert!(stored.as_array().unwrap().iter().any(|i| i["priority"] == "stat"), "{stored}");
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

/// Eight readers ask for the next item at once until the queue is empty: every item is
/// claimed exactly once, and nobody is told "nothing left" while items remain.
async fn claim_next_under_contention(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    let mut readers = Vec::new();
    for r in 0..8 {
        hub.user(&format!("rad{r}"), Role::Reader, Some("imaging")).await;
        readers.push(hub.worklist.user_by_name(&format!("rad{r}")).await.unwrap().unwrap());
    }
    const N: usize = 40;
    for i in 0..N {
        let study = format!("1.2.826.0.1.3680043.10.9.900.{i}");
        send_sc(&hub, "MODA", &format!("P-RACE{i}"), &study, &format!("{study}.1")).await;
    }
    let viewer = hub.user("viewer", Role::Reader, Some("imaging")).await;
    hub.eventually("all queued", || async { hub.queue(&viewer).await.iter().filter(|i| i["state"] == "ready").count() == N }).await;
    let mut tasks = Vec::new();
    for r in readers {
        let wl = hub.worklist.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(item) = wl.claim_next(&r).await.expect("claim next") {
                mine.push(item.id);
            }
            mine
        }));
    }
    each_claimed_once(tasks, N).await;
    hub.stop().await;
}

/// The claimants' item ids together: `n` items, each claimed exactly once.
async fn each_claimed_once(tasks: Vec<tokio::task::JoinHandle<Vec<i64>>>, n: usize) {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), n, "claims: {all:?}");
    assert_eq!(unique.len(), n, "an item was claimed twice: {all:?}");
}

/// The text (`pdftotext`), page geometry (`pdfinfo`) and fonts (`pdffonts`) of a PDF, from
/// poppler-utils: an independent reader of what the server wrote.
fn pdf_inspect(pdf: &[u8]) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).arg(&path).args(if tool == "pdftotext" { vec!["-"] } else { vec![] }).output();
        let out = out.unwrap_or_else(|e| panic!("{tool} (poppler-utils, installed by scripts/test.sh): {e}"));
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    (run("pdftotext", &["-enc", "UTF-8"]), run("pdfinfo", &[]), run("pdffonts", &[]))
}

fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A client that stops reading a large response (a dead VPN link mid-retrieve) does not
/// keep the hub from stopping: open connections get a bounded time to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_is_not_held_by_a_stalled_client() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let (code, out) = hub.storescu("MODA", &[], &[data("pydicom-data/RG1_UNCR.dcm")]).await;
    assert_eq!(code, 0, "{out}");
    let (study, ..) = sop_of(&data("pydicom-data/RG1_UNCR.dcm"));
    let stalled = hub.get(&admin, &format!("/dicom-web/studies/{study}")).await;
    assert_eq!(stalled.status(), 200);
    let started = std::time::Instant::now();
    hub.stop().await; // within 30 s, or it panics
    eprintln!("stopped {:?} after the stop with a stalled 7 MB retrieve open", started.elapsed());
    drop(stalled);
}
