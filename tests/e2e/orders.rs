//! Orders in (issue 14): a site's HIS sends an ORM over MLLP (GB18030), the modality sees it
//! on the modality worklist (DCMTK findscu and pynetdicom), the study that comes with its
//! accession number carries the order to the reader; malformed and foreign messages get a
//! NAK naming the segment and field; an order without its study is flagged to the site.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use worklist::Role;

use super::*;


fn orm(control_id: &str, order_control: &str, accession: &str, patient: &str, charset: &str) -> String {
    format!(
        "MSH|^~\\&|HIS|TOWNSHIP1|READHUB|HUB|20261202093000||ORM^O01|{control_id}|P|2.5|||||CHN|{charset}\n\
         PID|1||{patient}^^^TOWNSHIP1||Zhang^San~张^三||19600102|M\n\
         PV1|1|O|RAD\n\
         ORC|{order_control}|PL-{accession}|||SC||^^^20261202100000^^S|||||1001^李^四|||||^呼吸科\n\
         OBR|1|PL-{accession}||CHEST^胸部正位|||||||||咳嗽两周，发热三天|||||{accession}||||||DX|||||||排除肺炎\n\
         NTE|1||吸烟史三十年\n"
    )
}

/// Send one message with the test's HIS; the ACK as python-hl7 reads it.
async fn send(hub: &Hub, message: &str, encoding: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("msg.hl7");
    std::fs::write(&file, message).unwrap();
    let out = peer(&["send", "127.0.0.1", &hub.hl7_port.unwrap().to_string(), file.to_str().unwrap(), encoding]).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn peer(args: &[&str]) -> String {
    let mut c = tokio::process::Command::new(common::python());
    c.arg(root().join("tests/peers/orders_peer.py")).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("the orders peer hung").unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn mwl(hub: &Hub, calling: &str, charset: &str, keys: &[&str]) -> Value {
    let mut args = vec!["mwl".to_string(), hub.dimse_port.to_string(), calling.to_string(), charset.to_string()];
    args.extend(keys.iter().map(|k| k.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = peer(&args).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// DCMTK findscu -W: the answers it wrote (`-X`), read back with dcmdump.
async fn findscu_worklist(hub: &Hub, calling: &str, keys: &[&str]) -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::new("findscu");
    c.args(["-W", "-aet", calling, "-aec", "READHUB", "-X", "-od"]).arg(dir.path());
    for k in keys {
        c.args(["-k", k]);
    }
    c.args(["127.0.0.1", &hub.dimse_port.to_string()]).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("findscu hung").unwrap();
    assert!(out.status.success(), "findscu: {}", String::from_utf8_lossy(&out.stderr));
    let mut dumps = String::new();
    let mut n = 0;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        n += 1;
        let d = std::process::Command::new("dcmdump").arg("+U8").arg(&f).output().unwrap();
        dumps.push_str(&String::from_utf8_lossy(&d.stdout));
    }
    (n, dumps)
}

fn synthetic_file(dir: &Path, accession: &str, patient: &str, study: &str) -> std::path::PathBuf {
    let ds = common::synthetic_sc_with_accession(Some(b"ISO_IR 192"), "Zhang^San=张^三".as_bytes(), patient, study, &format!("{study}.1.1"), Some(accession));
    let path = dir.join(format!("{accession}.dcm"));
    std::fs::write(&path, common::part10(common::SC, &format!("{study}.1.1"), &ds)).unwrap();
    path
}

/// The whole way of an order: ORM in GB18030 → ACK; modality worklist (pynetdicom in
/// GB18030 and UTF-8, findscu); the study with its accession carries the order; scoping;
/// cancel and change.
async fn hl7_order_to_worklist_to_reader(backend: Backend) {
    if !common::peer_present("READHUB_TEST_PYTHON", "python-hl7 and pynetdicom") {
        return;
    }
    let hub = Hub::start_with(backend, |c| c.hl7_addr = Some("127.0.0.1:0".into())).await;
    let site = hub.site("Township-1", &["MOD1"], None).await;
    hub.site("Township-2", &["MOD2"], None).await;
    storage::sites::add_hl7_sender(&hub.storage.db, site.id, &storage::sites::Hl7Sender::parse("his@township1").unwrap()).await.unwrap();
    let reader = hub.user("radiologist", Role::Reader, Some("imaging")).await;
    let tech = hub.user("tech1", Role::Technician, Some("Township-1")).await;

    // the order, in GB18030 as MSH-18 says
    let ack = send(&hub, &orm("M1", "NW", "ACC001", "P1001", "GB 18030-2000"), "gb18030").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    assert_eq!(ack["msa2"], "M1", "{ack}");
    assert_eq!(ack["msh18"], "GB 18030-2000", "the ACK is in the message's character set: {ack}");

    // the modality's worklist: pynetdicom asking in GB18030, then in UTF-8
    for charset in ["GB18030", "ISO_IR 192"] {
        let r = mwl(&hub, "MOD1", charset, &["Modality=DX", "PatientName=张*"]).await;
        assert_eq!(r["status"], 0, "{r}");
        let a = &r["answers"].as_array().unwrap();
        assert_eq!(a.len(), 1, "{r}");
        assert_eq!(a[0]["name"], "Zhang^San=张^三", "{r}");
        assert_eq!(a[0]["charset"], charset, "{r}");
        assert_eq!(a[0]["accession"], "ACC001", "{r}");
        assert_eq!(a[0]["patient_id"], "P1001", "{r}");
        assert_eq!(a[0]["priority"], "STAT", "{r}");
        assert_eq!(a[0]["reason"], "排除肺炎", "{r}");
        assert_eq!(a[0]["history"], "咳嗽两周，发热三天\n吸烟史三十年", "{r}");
        assert_eq!(a[0]["date"], "20261202", "{r}");
        assert_eq!((a[0]["sex"].as_str(), a[0]["birth"].as_str()), (Some("M"), Some("19600102")), "{r}");
    }
    // keys that match nothing, and another site's modality: nothing
    let r = mwl(&hub, "MOD1", "", &["Modality=CT"]).await;
    assert_eq!(r["answers"].as_array().unwrap().len(), 0, "{r}");
    let r = mwl(&hub, "MOD1", "", &["ScheduledProcedureStepStartDate=20261203-"]).await;
    assert_eq!(r["answers"].as_array().unwrap().len(), 0, "{r}");
    let r = mwl(&hub, "MOD2", "ISO_IR 192", &[]).await;
    assert_eq!((r["status"].as_i64(), r["answers"].as_array().unwrap().len()), (Some(0), 0), "another site sees nothing: {r}");

    // DCMTK findscu -W, with an unsupported key among them (returned empty, not refused)
    let (n, dump) = findscu_worklist(
        &hub,
        "MOD1",
        &["SpecificCharacterSet=ISO_IR 192", "PatientName", "PatientID=P1001", "AccessionNumber", "StudyInstanceUID", "(0010,1000)",
          "ScheduledProcedureStepSequence[0].Modality=DX", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate"],
    )
    .await;
    assert_eq!(n, 1, "{dump}");
    assert!(dump.contains("Zhang^San=张^三"), "{dump}");
    assert!(dump.contains("[ACC001]"), "{dump}");
    assert!(dump.contains("(0010,1000)"), "the unsupported key comes back empty: {dump}");
    let order_uid = hub.worklist.order_by_accession(site.id, "ACC001").await.unwrap().study_uid;
    assert!(dump.contains(&order_uid), "{dump}");

    // the modality sends the study with the worklist's Study Instance UID and accession
    let dir = tempfile::tempdir().unwrap();
    let file = synthetic_file(dir.path(), "ACC001", "P1001", &order_uid);
    let (code, out) = hub.storescu("MOD1", &[], &[file]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the study is in the reader's queue", || async { hub.queue(&reader).await.iter().any(|i| i["accession_number"] == "ACC001") }).await;
    let item_id = hub.queue(&reader).await.iter().find(|i| i["accession_number"] == "ACC001").unwrap()["id"].as_i64().unwrap();
    let detail = hub.get_json(&reader, &format!("/api/worklist/{item_id}")).await;
    let order = &detail["order"];
    assert_eq!(order["clinical_question"], "排除肺炎", "{detail}");
    assert_eq!(order["clinical_history"], "咳嗽两周，发热三天\n吸烟史三十年", "{detail}");
    assert_eq!(order["requesting_physician"], "李^四", "{detail}");
    assert_eq!(order["requesting_department"], "呼吸科", "{detail}");
    assert_eq!(order["state"], "arrived", "{detail}");
    assert_eq!(detail["item"]["priority"], "stat", "the priority comes from the order: {detail}");
    // the order is off the modality worklist once its study came
    let r = mwl(&hub, "MOD1", "", &[]).await;
    assert_eq!(r["answers"].as_array().unwrap().len(), 0, "{r}");
    // the site's technician sees the site's orders
    let orders = hub.get_json(&tech, "/api/orders").await;
    assert!(orders.as_array().unwrap().iter().any(|o| o["accession_number"] == "ACC001" && o["state"] == "arrived"), "{orders}");

    // a study whose order came after it (the modality typed the accession): linked then
    let file = synthetic_file(dir.path(), "ACC002", "P1002", "1.2.826.0.1.3680043.10.14.2002");
    let (code, out) = hub.storescu("MOD1", &[], &[file]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("the early study has its item", || async { hub.queue(&reader).await.iter().any(|i| i["accession_number"] == "ACC002") }).await;
    let ack = send(&hub, &orm("M2", "NW", "ACC002", "P1002", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    let late = hub.worklist.order_by_accession(site.id, "ACC002").await.unwrap();
    assert_eq!(late.state, worklist::orders::OrderState::Arrived);
    let detail = hub.get_json(&reader, &format!("/api/worklist/{}", late.item_id.unwrap())).await;
    assert_eq!(detail["order"]["clinical_question"], "排除肺炎", "{detail}");

    // the same accession for another patient: not linked, and the site is alerted
    let ack = send(&hub, &orm("M6", "NW", "ACC009", "P1009", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    let file = synthetic_file(dir.path(), "ACC009", "SOMEONE-ELSE", "1.2.826.0.1.3680043.10.14.2009");
    assert_eq!(hub.storescu("MOD1", &[], &[file]).await.0, 0);
    hub.eventually("the site is alerted to the mismatch", || async {
        hub.get_json(&tech, "/api/alerts").await.as_array().unwrap().iter().any(|a| a["kind"] == "order_mismatch" && a["message"].as_str().unwrap().contains("ACC009"))
    })
    .await;
    assert_eq!(hub.worklist.order_by_accession(site.id, "ACC009").await.unwrap().state, worklist::orders::OrderState::Scheduled, "not linked");
    hub.worklist.cancel_order(site.id, "ACC009").await.unwrap();

    // change (XO) and cancel (CA): the worklist follows
    let ack = send(&hub, &orm("M3", "NW", "ACC003", "P1003", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    let changed = orm("M4", "XO", "ACC003", "P1003", "UNICODE UTF-8").replace("||DX||", "||CR||");
    let ack = send(&hub, &changed, "utf-8").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    let r = mwl(&hub, "MOD1", "", &["Modality=CR"]).await;
    assert_eq!(r["answers"].as_array().unwrap().len(), 1, "{r}");
    let ack = send(&hub, &orm("M5", "CA", "ACC003", "P1003", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!(ack["msa1"], "AA", "{ack}");
    let r = mwl(&hub, "MOD1", "", &[]).await;
    assert_eq!(r["answers"].as_array().unwrap().len(), 0, "{r}");
    hub.stop().await;
}

/// Bad HL7: each refusal names what is wrong, and the listener and the hub carry on.
async fn hl7_refusals(backend: Backend) {
    if !common::peer_present("READHUB_TEST_PYTHON", "python-hl7") {
        return;
    }
    let hub = Hub::start_with(backend, |c| c.hl7_addr = Some("127.0.0.1:0".into())).await;
    let site = hub.site("Township-1", &["MOD1"], None).await;
    storage::sites::add_hl7_sender(&hub.storage.db, site.id, &storage::sites::Hl7Sender::parse("HIS").unwrap()).await.unwrap();
    let ok = orm("B1", "NW", "ACC100", "P100", "UNICODE UTF-8");
    assert_eq!(send(&hub, &ok, "utf-8").await["msa1"], "AA");

    // the same accession again: refused, named
    let ack = send(&hub, &orm("B2", "NW", "ACC100", "P100", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!((ack["msa1"].as_str(), ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("AE"), Some("205"), Some("OBR^1^18")), "{ack}");
    assert!(ack["err_text"].as_str().unwrap().contains("ACC100"), "{ack}");
    // an unknown sender
    let ack = send(&hub, &ok.replace("|HIS|TOWNSHIP1|", "|OTHERHIS|X|").replace("ACC100", "ACC101"), "utf-8").await;
    assert_eq!((ack["msa1"].as_str(), ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("AR"), Some("204"), Some("MSH^1^3")), "{ack}");
    // no patient ID
    let ack = send(&hub, &ok.replace("P100^^^TOWNSHIP1", "").replace("ACC100", "ACC102"), "utf-8").await;
    assert_eq!((ack["msa1"].as_str(), ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("AE"), Some("101"), Some("PID^1^3^1")), "{ack}");
    // no modality
    let ack = send(&hub, &ok.replace("||DX||", "||||").replace("ACC100", "ACC103"), "utf-8").await;
    assert_eq!((ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("101"), Some("OBR^1^24")), "{ack}");
    // not an order
    let ack = send(&hub, &ok.replace("ORM^O01", "ADT^A08"), "utf-8").await;
    assert_eq!((ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("200"), Some("MSH^1^9^1")), "{ack}");
    // a character set readhub does not read
    let ack = send(&hub, &ok.replace("UNICODE UTF-8", "ISO IR87"), "utf-8").await;
    assert_eq!((ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("103"), Some("MSH^1^18")), "{ack}");
    // MSH-18 says UTF-8 but the bytes are GB18030
    let ack = send(&hub, &ok.replace("ACC100", "ACC104"), "gb18030").await;
    assert_eq!((ack["err_code"].as_str(), ack["err_location"].as_str()), (Some("102"), Some("MSH^1^18")), "{ack}");
    // a cancel of an order that does not exist
    let ack = send(&hub, &orm("B9", "CA", "NOSUCH", "P100", "UNICODE UTF-8"), "utf-8").await;
    assert_eq!((ack["msa1"].as_str(), ack["err_code"].as_str()), (Some("AE"), Some("204")), "{ack}");
    // not HL7 at all, inside and outside a frame: a NAK, or the connection closed; no crash
    let port = hub.hl7_port.unwrap().to_string();
    let r = peer(&["raw", "127.0.0.1", &port, "0b48454c4c4f1c0d"]).await;
    assert!(r.contains("MSA|AR"), "{r}");
    peer(&["raw", "127.0.0.1", &port, &"41".repeat(4096)]).await;
    // nothing of it reached the orders
    let orders = hub.worklist.list_orders(worklist::Scope::All, None, 100).await.unwrap();
    assert_eq!(orders.iter().map(|o| o.accession_number.as_str()).collect::<Vec<_>>(), vec!["ACC100"]);
    // and the listener still takes orders
    assert_eq!(send(&hub, &orm("B10", "NW", "ACC105", "P105", "UNICODE UTF-8"), "utf-8").await["msa1"], "AA");
    // and the rest of the hub still answers: C-ECHO and QIDO
    assert!(echo(hub.dimse_port, "MOD1").await.0);
    let admin = hub.user("admin", Role::Admin, None).await;
    assert!(hub.get(&admin, "/dicom-web/studies").await.status().is_success(), "QIDO answers (204: no studies)");
    hub.stop().await;
}

/// An order that waits longer than `order_overdue_minutes` for its study is flagged to its
/// site, once; one whose study came is not.
async fn overdue_orders_are_flagged(backend: Backend) {
    let hub = Hub::start(backend).await;
    let site = hub.site("Township-1", &["MOD1"], None).await;
    let tech = hub.user("tech1", Role::Technician, Some("Township-1")).await;
    let order = |acc: &str| worklist::orders::NewOrder {
        accession_number: acc.into(),
        patient: worklist::orders::OrderPatient { id: "P9".into(), name: "王^五".into(), ..Default::default() },
        modality: "DX".into(),
        ..Default::default()
    };
    hub.worklist.place_order(site.id, order("OVER1"), "desk:test").await.unwrap();
    let now = hub.worklist.now();
    assert_eq!(hub.worklist.flag_overdue_orders(now).await.unwrap(), 0, "not yet overdue");
    let later = now + 25 * 3600 * 1000;
    assert_eq!(hub.worklist.flag_overdue_orders(later).await.unwrap(), 1);
    assert_eq!(hub.worklist.flag_overdue_orders(later).await.unwrap(), 0, "flagged once");
    let alerts = hub.get_json(&tech, "/api/alerts").await;
    assert!(alerts.as_array().unwrap().iter().any(|a| a["kind"] == "order_overdue" && a["message"].as_str().unwrap().contains("OVER1")), "{alerts}");
    hub.stop().await;
}
on_both!(hl7_order_to_worklist_to_reader, hl7_refusals, overdue_orders_are_flagged);
