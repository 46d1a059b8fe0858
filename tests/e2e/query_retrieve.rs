//! Query/retrieve for workstations and PACS (issue 14), with DCMTK findscu, movescu and
//! getscu: a site's modality AE title finds and pulls only its site's studies; a county
//! workstation registered with the reading pool finds and pulls the pool's; C-MOVE goes
//! only to a configured destination of the caller (others: 0xA801); a workstation stores
//! nothing (0x0124).

use std::path::Path;
use std::time::Duration;

use super::*;

async fn dcmtk(tool: &str, args: &[String]) -> (bool, String) {
    let mut c = tokio::process::Command::new(tool);
    c.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), c.output()).await.unwrap_or_else(|_| panic!("{tool} hung")).unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// findscu with `-X` into a fresh folder: the answers, dumped.
async fn find(hub: &Hub, model: &str, calling: &str, keys: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![model.into(), "-aet".into(), calling.into(), "-aec".into(), "READHUB".into(), "-X".into(), "-od".into(), dir.path().display().to_string()];
    for k in keys {
        args.push("-k".into());
        args.push(k.to_string());
    }
    args.push("127.0.0.1".into());
    args.push(hub.dimse_port.to_string());
    let (ok, out) = dcmtk("findscu", &args).await;
    assert!(ok, "findscu: {out}");
    files_dumped(dir.path())
}

fn files_dumped(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v.iter().map(|f| String::from_utf8_lossy(&std::process::Command::new("dcmdump").arg("+U8").arg(f).output().unwrap().stdout).to_string()).collect()
}

async fn workstation_and_sites_query_and_retrieve(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-1", &["MOD1"], None).await;
    hub.site("Township-2", &["MOD2"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    // the county workstation joins the imaging pool (the admin API; the CLI does the same)
    let (code, body) = hub.send(&admin, Method::PUT, "/api/admin/pools/imaging/ae-titles/WS1", None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = hub.send(&admin, Method::PUT, "/api/admin/pools/imaging/ae-titles/MOD1", None).await;
    assert_eq!(code, 400, "a site's AE title is not a workstation's: {body}");
    let mr = data("pydicom/test_files/MR_small.dcm");
    let ct = data("pydicom/test_files/CT_small.dcm");
    let (mr_study, mr_series, mr_sop, mr_patient) = sop_of(&mr);
    let (ct_study, _, _, _) = sop_of(&ct);
    assert_eq!(hub.storescu("MOD1", &[], &[mr.clone()]).await.0, 0);
    assert_eq!(hub.storescu("MOD2", &[], &[ct.clone()]).await.0, 0);
    hub.eventually("both studies are indexed and routed", || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM worklist_items").fetch_one(hub.storage.db.pool()).await.unwrap();
        n == 2
    })
    .await;

    // C-FIND, study root, study level: a site sees its own study only
    let a = find(&hub, "-S", "MOD1", &["QueryRetrieveLevel=STUDY", "PatientName", "PatientID", "StudyInstanceUID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "(0010,1000)"]).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].contains(&mr_study) && a[0].contains("[MR]") && a[0].contains(&mr_patient), "{}", a[0]);
    assert!(a[0].contains("(0010,1000)"), "a key readhub does not match on comes back, empty: {}", a[0]);
    let b = find(&hub, "-S", "MOD2", &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"]).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].contains(&ct_study) && !b[0].contains(&mr_study), "{}", b[0]);
    // wildcards and a key that matches nothing
    assert_eq!(find(&hub, "-S", "MOD1", &["QueryRetrieveLevel=STUDY", "PatientID=NO-SUCH*", "StudyInstanceUID"]).await.len(), 0);
    // patient root, patient level
    let p = find(&hub, "-P", "MOD1", &["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "NumberOfPatientRelatedStudies"]).await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains(&mr_patient), "{}", p[0]);
    // series and image levels
    let s = find(&hub, "-S", "MOD1", &["QueryRetrieveLevel=SERIES", &format!("StudyInstanceUID={mr_study}"), "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances"]).await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].contains(&mr_series), "{}", s[0]);
    let i = find(&hub, "-S", "MOD1", &["QueryRetrieveLevel=IMAGE", &format!("StudyInstanceUID={mr_study}"), &format!("SeriesInstanceUID={mr_series}"), "SOPInstanceUID", "SOPClassUID"]).await;
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains(&mr_sop), "{}", i[0]);
    // another site's study by its UID: nothing
    assert_eq!(find(&hub, "-S", "MOD1", &["QueryRetrieveLevel=STUDY", &format!("StudyInstanceUID={ct_study}")]).await.len(), 0);
    // the county workstation sees its pool's studies: both
    assert_eq!(find(&hub, "-S", "WS1", &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"]).await.len(), 2);

    // C-MOVE: the workstation pulls site 1's study to itself (a storescp as WS1)
    let ws_dir = tempfile::tempdir().unwrap();
    let ws_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _ws = tokio::process::Command::new("storescp").args(["-aet", "WS1", "-od"]).arg(ws_dir.path()).arg(ws_port.to_string()).kill_on_drop(true).spawn().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", ws_port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = hub.send(&admin, Method::PUT, "/api/admin/dicom-nodes/WS1", Some(json!({"host": "127.0.0.1", "port": ws_port}))).await;
    assert_eq!(code, 200, "{body}");
    let mv = |calling: &str, dest: &str, study: &str| {
        vec![
            "-S".to_string(), "-aet".into(), calling.into(), "-aec".into(), "READHUB".into(), "-aem".into(), dest.into(),
            "-k".into(), "QueryRetrieveLevel=STUDY".into(), "-k".into(), format!("StudyInstanceUID={study}"),
            "127.0.0.1".into(), hub.dimse_port.to_string(),
        ]
    };
    let (ok, out) = dcmtk("movescu", &mv("WS1", "WS1", &mr_study)).await;
    assert!(ok, "movescu: {out}");
    let got = files_dumped(ws_dir.path());
    assert_eq!(got.len(), 1, "{out}");
    assert!(got[0].contains(&mr_sop), "{}", got[0]);
    // the instance arrives as readhub holds it, byte for byte
    let held = storage::query::search_instances(&hub.storage.db, StudyFilter::All, &storage::query::InstanceQuery { sop_instance_uids: vec![mr_sop.clone()], ..Default::default() }).await.unwrap();
    let stored = hub.storage.blobs.get_bytes(&held[0].blob_key).await.unwrap();
    let dir_held = tempfile::tempdir().unwrap();
    std::fs::write(dir_held.path().join("held.dcm"), &stored).unwrap();
    let (_, _, _, original) = common::dataset_bytes(&dir_held.path().join("held.dcm"));
    let received = std::fs::read_dir(ws_dir.path()).unwrap().next().unwrap().unwrap().path();
    let (_, _, _, moved) = common::dataset_bytes(&received);
    assert!(moved == original, "the data set moved byte for byte ({} and {} bytes)", moved.len(), original.len());
    // to a destination nobody configured: refused, A801
    let (_, out) = dcmtk("movescu", &mv("WS1", "NOWHERE", &mr_study)).await;
    assert!(out.contains("MoveDestinationUnknown"), "{out}");
    // a site's modality cannot move to the pool's workstation
    let (_, out) = dcmtk("movescu", &mv("MOD1", "WS1", &mr_study)).await;
    assert!(out.contains("MoveDestinationUnknown"), "{out}");
    assert_eq!(files_dumped(ws_dir.path()).len(), 1, "nothing more arrived");

    // C-GET: the site pulls its own study on the same association; another site's, nothing
    let get = |calling: &str, study: &str, dir: &Path| {
        vec![
            "-S".to_string(), "-aet".into(), calling.into(), "-aec".into(), "READHUB".into(), "-od".into(), dir.display().to_string(),
            "-k".into(), "QueryRetrieveLevel=STUDY".into(), "-k".into(), format!("StudyInstanceUID={study}"),
            "127.0.0.1".into(), hub.dimse_port.to_string(),
        ]
    };
    let g = tempfile::tempdir().unwrap();
    let (ok, out) = dcmtk("getscu", &get("MOD1", &mr_study, g.path())).await;
    assert!(ok, "getscu: {out}");
    let got = files_dumped(g.path());
    assert_eq!(got.len(), 1, "{out}");
    assert!(got[0].contains(&mr_sop), "{}", got[0]);
    let g2 = tempfile::tempdir().unwrap();
    let (_, out) = dcmtk("getscu", &get("MOD1", &ct_study, g2.path())).await;
    assert_eq!(files_dumped(g2.path()).len(), 0, "another site's study is not retrieved: {out}");

    // pynetdicom as the workstation: C-FIND of its pool's studies, C-GET of one
    let py = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(common::python()).arg(root().join("tests/peers/qr_scu.py")).args(&args).kill_on_drop(true).output();
        let out = tokio::time::timeout(Duration::from_secs(90), out).await.expect("the pynetdicom workstation hung").unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    if common::peer_present("READHUB_TEST_PYTHON", "pynetdicom") {
        let port = hub.dimse_port.to_string();
        let r = py(vec!["find".into(), port.clone(), "WS1".into(), "STUDY".into(), "StudyInstanceUID=".into(), "PatientID=".into(), "ModalitiesInStudy=".into()]).await;
        assert_eq!(r["status"], 0, "{r}");
        assert_eq!(r["answers"].as_array().unwrap().len(), 2, "{r}");
        let r = py(vec!["find".into(), port.clone(), "MOD2".into(), "STUDY".into(), "StudyInstanceUID=".into()]).await;
        assert_eq!(r["answers"], json!([{ "StudyInstanceUID": ct_study }]), "{r}");
        let r = py(vec!["get".into(), port.clone(), "WS1".into(), ct_study.clone()]).await;
        assert_eq!((r["status"].as_i64(), r["completed"].as_i64(), r["failed"].as_i64()), (Some(0), Some(1), Some(0)), "{r}");
        assert_eq!(r["received"].as_array().unwrap().len(), 1, "{r}");
    }

    // a workstation stores nothing
    let (code, out) = hub.storescu("WS1", &["-v"], &[ct.clone()]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Status: 0x124)"), "refused, Not Authorized (0x0124): {out}");
    // and the hub still answers
    assert!(echo(hub.dimse_port, "MOD1").await.0);
    hub.stop().await;
}

on_both!(workstation_and_sites_query_and_retrieve);
on_s3!(workstation_and_sites_query_and_retrieve);
