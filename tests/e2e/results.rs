//! Results out (issue 14): a signed report reaches the site's HIS (HL7 ORU^R01 over MLLP,
//! read back with python-hl7), its FHIR server (a DiagnosticReport, validated with
//! fhir.resources) and its PACS (DCMTK storescp receives the Encapsulated PDF in the same
//! study; dcm2pdf and pdftotext read it back); a correction goes the same ways as corrected.
//! A destination that is down keeps the delivery pending, retried, and visible to the admins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

struct Peers {
    dir: tempfile::TempDir,
    mllp: u16,
    fhir: u16,
    pacs_port: u16,
    _results: tokio::process::Child,
    _storescp: tokio::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Peers {
    async fn start() -> Peers {
        let dir = tempfile::tempdir().unwrap();
        let results = tokio::process::Command::new(common::python())
            .arg(root().join("tests/peers/results_peer.py"))
            .arg(dir.path())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ports = dir.path().join("ports.json");
        for _ in 0..300 {
            if ports.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let p: Value = serde_json::from_str(&std::fs::read_to_string(&ports).expect("the results peer started")).unwrap();
        let pacs_dir = dir.path().join("pacs");
        std::fs::create_dir_all(&pacs_dir).unwrap();
        let pacs_port = free_port();
        let storescp = tokio::process::Command::new("storescp")
            .args(["-aet", "SITEPACS", "-od"])
            .arg(&pacs_dir)
            .arg(pacs_port.to_string())
            .kill_on_drop(true)
            .spawn()
            .expect("storescp (DCMTK)");
        // storescp listens once its port answers
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", pacs_port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Peers { mllp: p["mllp"].as_u64().unwrap() as u16, fhir: p["fhir"].as_u64().unwrap() as u16, pacs_port, dir, _results: results, _storescp: storescp }
    }

    fn lines(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn pacs_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("pacs")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }
}

/// The text of an Encapsulated PDF as the PACS holds it: dcm2pdf, then pdftotext.
fn pdf_text_of(dcm: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = tmp.path().join("report.pdf");
    let out = std::process::Command::new("dcm2pdf").arg(dcm).arg(&pdf).output().unwrap();
    assert!(out.status.success(), "dcm2pdf: {}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn dump(dcm: &Path) -> String {
    let out = std::process::Command::new("dcmdump").arg("+U8").arg(dcm).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn results_reach_his_fhir_and_pacs(backend: Backend) {
    if !common::peer_present("READHUB_TEST_PYTHON", "python-hl7 and fhir.resources") {
        return;
    }
    let peers = Peers::start().await;
    let hub = Hub::start(backend).await;
    let site = hub.site("Township-1", &["MOD1"], None).await;
    hub.site("Township-2", &["MOD2"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let rad = hub.user("rad", Role::Reader, Some("imaging")).await;
    let outbound = json!({
        "hl7": format!("127.0.0.1:{}", peers.mllp),
        "fhir": format!("http://127.0.0.1:{}/fhir", peers.fhir),
        "pacs": { "ae_title": "SITEPACS", "host": "127.0.0.1", "port": peers.pacs_port },
    });
    let (code, body) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-1/outbound", Some(outbound.clone())).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, outbound);
    let (code, body) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-1/outbound", Some(json!({"hl7": "nowhere"}))).await;
    assert_eq!(code, 422, "a destination that is not host:port is refused: {body}");
    // Township-2's HIS is down
    let dead = free_port();
    let (code, _) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-2/outbound", Some(json!({"hl7": format!("127.0.0.1:{dead}")}))).await;
    assert_eq!(code, 200);

    // the order and its study
    let order = worklist::orders::NewOrder {
        accession_number: "RES001".into(),
        placer_order_number: "HIS-PL-9".into(),
        filler_order_number: "HIS-FI-9".into(),
        patient: worklist::orders::OrderPatient { id: "P-RES".into(), name: "Zhang^San=张^三".into(), ..Default::default() },
        modality: "DX".into(),
        procedure_description: "胸部正位".into(),
        clinical_question: "排除肺炎".into(),
        ..Default::default()
    };
    let order = hub.worklist.place_order(site.id, order, "desk:test").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ds = common::synthetic_sc_with_accession(Some(b"ISO_IR 192"), "Zhang^San=张^三".as_bytes(), "P-RES", &order.study_uid, &format!("{}.1.1", order.study_uid), Some("RES001"));
    let file = dir.path().join("res.dcm");
    std::fs::write(&file, common::part10(common::SC, &format!("{}.1.1", order.study_uid), &ds)).unwrap();
    let (code, out) = hub.storescu("MOD1", &[], &[file]).await;
    assert_eq!(code, 0, "{out}");
    let ds2 = common::synthetic_sc_with_accession(None, b"Li^Si", "P-DEAD", "1.2.826.0.1.3680043.10.14.777", "1.2.826.0.1.3680043.10.14.777.1.1", Some("DEAD01"));
    let file2 = dir.path().join("dead.dcm");
    std::fs::write(&file2, common::part10(common::SC, "1.2.826.0.1.3680043.10.14.777.1.1", &ds2)).unwrap();
    let (code, out) = hub.storescu("MOD2", &[], &[file2]).await;
    assert_eq!(code, 0, "{out}");
    hub.eventually("both studies ready", || async { hub.queue(&rad).await.iter().filter(|i| i["state"] == "ready").count() == 2 }).await;
    let queue = hub.queue(&rad).await;
    let item = |pid: &str| queue.iter().find(|i| i["patient_id"] == pid).unwrap()["id"].as_i64().unwrap();
    let (item, dead_item) = (item("P-RES"), item("P-DEAD"));
    for (id, impression) in [(item, "右下肺炎"), (dead_item, "未见异常")] {
        assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{id}/claim"), None).await.0, 200);
        let (c, b) = hub.send(&rad, Method::PUT, &format!("/api/worklist/{id}/report"), Some(json!({"findings": "右下肺野斑片影", "impression": impression}))).await;
        assert_eq!(c, 200, "{b}");
        let (c, b) = hub.send(&rad, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
        assert_eq!(c, 200, "{b}");
    }

    // the HIS: an ORU, final, with the order's identifiers and the report text
    hub.eventually("the HIS has the ORU", || async { !peers.lines("hl7.jsonl").is_empty() }).await;
    let oru = &peers.lines("hl7.jsonl")[0];
    assert_eq!(oru["type"], "ORU^R01^ORU_R01", "{oru}");
    assert_eq!(oru["charset"], "UNICODE UTF-8", "{oru}");
    assert_eq!((oru["placer"].as_str(), oru["filler"].as_str(), oru["accession"].as_str()), (Some("HIS-PL-9"), Some("HIS-FI-9"), Some("RES001")), "{oru}");
    assert_eq!(oru["obr25"], "F", "{oru}");
    assert!(oru["pid3"].as_str().unwrap().starts_with("P-RES"), "{oru}");
    assert_eq!(oru["pid5"], "Zhang^San~张^三", "{oru}");
    assert_eq!(oru["obr32"], "rad", "the signer: {oru}");
    let obx = oru["obx"].as_array().unwrap();
    assert!(obx.iter().any(|o| o["value"] == "右下肺炎" && o["status"] == "F"), "{oru}");
    assert!(obx.iter().any(|o| o["value"] == order.study_uid), "{oru}");
    // the FHIR server: a valid DiagnosticReport, final, the PDF as presentedForm
    hub.eventually("the FHIR server has the DiagnosticReport", || async { !peers.lines("fhir.jsonl").is_empty() }).await;
    let dr = &peers.lines("fhir.jsonl")[0];
    assert_eq!(dr["valid"], true, "fhir.resources validates it: {dr}");
    assert_eq!(dr["status"], "final", "{dr}");
    assert_eq!(dr["conclusion"], "右下肺炎", "{dr}");
    assert_eq!(dr["pdf_head"], "%PDF-", "{dr}");
    assert_eq!(dr["path"], format!("/fhir/DiagnosticReport/readhub-{item}"), "{dr}");
    assert_eq!(dr["content_type"], "application/fhir+json", "{dr}");
    assert_eq!(dr["basedOn"][0]["identifier"]["value"], "RES001", "{dr}");
    assert_eq!(dr["imagingStudy"][0]["identifier"]["value"], format!("urn:oid:{}", order.study_uid), "{dr}");
    // the PACS: the report as an Encapsulated PDF and a Basic Text SR in the same study
    hub.eventually("the PACS has the PDF and the SR", || async { peers.pacs_files().len() >= 2 }).await;
    let dumps: Vec<(PathBuf, String)> = peers.pacs_files().into_iter().map(|f| { let d = dump(&f); (f, d) }).collect();
    let (pdf_dcm, d) = dumps.iter().find(|(_, d)| d.contains("=EncapsulatedPDFStorage")).expect("an Encapsulated PDF");
    assert!(d.contains(&order.study_uid), "the same study: {d}");
    assert!(d.contains("Zhang^San=张^三") && d.contains("[RES001]"), "{d}");
    let text = pdf_text_of(pdf_dcm);
    assert!(text.contains("右下肺炎"), "the PDF in the PACS says the impression: {text}");
    let (_, sr) = dumps.iter().find(|(_, d)| d.contains("=BasicTextSRStorage")).expect("a Basic Text SR");
    assert!(sr.contains(&order.study_uid) && sr.contains("[VERIFIED]") && sr.contains("[COMPLETE]"), "{sr}");
    assert!(sr.contains("右下肺炎") && sr.contains("右下肺野斑片影") && sr.contains("[Impression]"), "{sr}");
    // DCMTK's SR reader takes it as a valid document
    let out = std::process::Command::new("dsrdump").arg(&dumps.iter().find(|(_, d)| d.contains("=BasicTextSRStorage")).unwrap().0).output().unwrap();
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && tree.contains("Diagnostic Imaging Report") && tree.contains("右下肺炎"), "dsrdump: {tree}{}", String::from_utf8_lossy(&out.stderr));

    // a correction: corrected everywhere
    let (c, b) = hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/report/correct"), Some(json!({"findings": "右下肺野斑片影", "impression": "右下肺炎，建议复查", "reason": "补充建议"}))).await;
    assert_eq!(c, 200, "{b}");
    hub.eventually("the corrected report went out three ways", || async {
        peers.lines("hl7.jsonl").len() >= 2 && peers.lines("fhir.jsonl").len() >= 2 && peers.pacs_files().len() >= 4
    })
    .await;
    let oru = &peers.lines("hl7.jsonl")[1];
    assert_eq!(oru["obr25"], "C", "{oru}");
    assert!(oru["obx"].as_array().unwrap().iter().any(|o| o["value"] == "右下肺炎，建议复查" && o["status"] == "C"), "{oru}");
    let dr = &peers.lines("fhir.jsonl")[1];
    assert_eq!((dr["valid"].as_bool(), dr["status"].as_str()), (Some(true), Some("corrected")), "{dr}");
    assert_eq!(dr["path"], format!("/fhir/DiagnosticReport/readhub-{item}"), "the same resource, updated: {dr}");
    let newest = peers.pacs_files().into_iter().filter(|f| dump(f).contains("=EncapsulatedPDFStorage")).find(|f| pdf_text_of(f).contains("建议复查")).expect("the corrected PDF in the PACS");
    assert!(dump(&newest).contains(&order.study_uid));

    // an addendum goes the same ways: the HIS gets it as an observation, FHIR as appended
    let (c, b) = hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/report/addendum"), Some(json!({"text": "两周后复查胸片"}))).await;
    assert_eq!(c, 200, "{b}");
    hub.eventually("the addendum went out three ways", || async {
        peers.lines("hl7.jsonl").len() >= 3 && peers.lines("fhir.jsonl").len() >= 3 && peers.pacs_files().len() >= 6
    })
    .await;
    let oru = &peers.lines("hl7.jsonl")[2];
    assert!(oru["obx"].as_array().unwrap().iter().any(|o| o["value"].as_str().unwrap().contains("两周后复查胸片")), "{oru}");
    let dr = &peers.lines("fhir.jsonl")[2];
    assert_eq!((dr["valid"].as_bool(), dr["status"].as_str()), (Some(true), Some("appended")), "{dr}");

    // the admins' view: nine delivered; Township-2's HIS down, so pending with its reason
    // (a peer has the file a moment before the hub has recorded its answer)
    hub.eventually("nine deliveries recorded", || async {
        hub.get_json(&admin, "/api/admin/results?state=delivered").await.as_array().unwrap().len() >= 9
    })
    .await;
    let delivered = hub.get_json(&admin, "/api/admin/results?state=delivered").await;
    assert_eq!(delivered.as_array().unwrap().len(), 9, "{delivered}");
    hub.eventually("the dead HIS shows as failing", || async {
        let failed = hub.get_json(&admin, "/api/admin/results?state=failed").await;
        failed.as_array().unwrap().iter().any(|d| d["site_name"] == "Township-2" && d["last_error"].as_str().is_some_and(|e| e.contains("cannot connect")))
    })
    .await;
    // its HIS comes back: the retry delivers it
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", dead)).await.unwrap();
    let his = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let frame = hl7::mllp::read_frame(&mut s, Duration::from_secs(60), Duration::from_secs(60)).await.unwrap();
        let hl7::mllp::Frame::Message(m) = frame else { panic!("closed") };
        let text = String::from_utf8(m).unwrap();
        let control = text.split('\r').next().unwrap().split('|').nth(9).unwrap().to_string();
        hl7::mllp::write_frame(&mut s, format!("MSH|^~\\&|HIS|T2|||20261202||ACK|1|P|2.5.1\rMSA|AA|{control}\r").as_bytes()).await.unwrap();
        text
    });
    let got = tokio::time::timeout(Duration::from_secs(90), his).await.expect("the retry came").unwrap();
    assert!(got.contains("未见异常") && got.contains("DEAD01"), "{got}");
    hub.eventually("delivered after the retry", || async {
        hub.get_json(&admin, "/api/admin/results?state=pending").await.as_array().unwrap().is_empty()
    })
    .await;
    hub.stop().await;
}

on_both!(results_reach_his_fhir_and_pacs);

/// Every resource, validated by fhir.resources: "ok" or why not.
async fn fhir_valid(docs: &[&Value]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![root().join("tests/peers/fhir_check.py").display().to_string()];
    for (k, d) in docs.iter().enumerate() {
        let p = dir.path().join(format!("{k}.json"));
        std::fs::write(&p, d.to_string()).unwrap();
        args.push(p.display().to_string());
    }
    let out = tokio::process::Command::new(common::python()).args(&args).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn service_request(accession: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "contained": [{
            "resourceType": "Patient", "id": "p1",
            "identifier": [{ "system": "urn:oid:2.16.156.1.1", "value": "P-FHIR" }],
            "name": [{ "family": "Wang", "given": ["Wu"] }, { "family": "王", "given": ["五"] }],
            "gender": "female", "birthDate": "1975-06-01"
        }],
        "identifier": [
            { "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] }, "value": accession },
            { "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC" }] }, "value": format!("HIS-{accession}") }
        ],
        "status": "active", "intent": "order", "priority": "stat",
        "code": { "coding": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX" }, { "system": "urn:his:procedures", "code": "CHEST2", "display": "胸部正侧位" }] },
        "subject": { "reference": "#p1" },
        "occurrenceDateTime": "2026-12-02T10:00:00+08:00",
        "requester": { "display": "赵 医生" },
        "reasonCode": [{ "text": "外伤后胸痛" }],
        "note": [{ "text": "高血压病史十年" }]
    })
}

/// FHIR: a site's system orders by `POST /fhir/ServiceRequest` (Patient contained); a
/// resource that does not validate gets an OperationOutcome naming the field, a duplicate
/// accession 409; once the study is read, `GET /fhir/DiagnosticReport` by the patient's
/// identifier or by `Patient/{id}` finds the report, and `GET /fhir/Patient/{id}` the patient,
/// scoped like the reports; all of it valid for fhir.resources.
async fn fhir_orders_in_reports_out(backend: Backend) {
    if !common::peer_present("READHUB_TEST_PYTHON", "fhir.resources") {
        return;
    }
    let hub = Hub::start(backend).await;
    let site = hub.site("Township-1", &["MOD1"], None).await;
    hub.site("Township-2", &["MOD2"], None).await;
    let tech = hub.user("tech1", Role::Technician, Some("Township-1")).await;
    let doc = hub.user("doc1", Role::Referrer, Some("Township-1")).await;
    let other = hub.user("tech2", Role::Technician, Some("Township-2")).await;
    let rad = hub.user("rad", Role::Reader, Some("imaging")).await;

    let sr = service_request("FH001");
    let (code, body) = hub.send(&doc, Method::POST, "/fhir/ServiceRequest", Some(sr.clone())).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["resourceType"], "ServiceRequest");
    let order = hub.worklist.order_by_accession(site.id, "FH001").await.unwrap();
    assert_eq!(order.patient.name, "Wang^Wu=王^五");
    assert_eq!((order.patient.sex.as_str(), order.patient.birth_date.as_str()), ("F", "19750601"));
    assert_eq!(order.priority, worklist::Priority::Stat);
    assert_eq!((order.clinical_question.as_str(), order.clinical_history.as_str()), ("外伤后胸痛", "高血压病史十年"));
    assert_eq!((order.modality.as_str(), order.procedure_description.as_str(), order.placer_order_number.as_str()), ("DX", "胸部正侧位", "HIS-FH001"));
    assert_eq!(order.scheduled_date, "20261202");
    // on the modality worklist
    let mwl = hub.worklist.modality_worklist(site.id, &worklist::orders::WorklistQuery { modality: "DX".into(), ..Default::default() }).await.unwrap();
    assert_eq!(mwl.len(), 1);

    // what does not validate: an OperationOutcome naming it
    let mut no_status = service_request("FH002");
    no_status.as_object_mut().unwrap().remove("status");
    let mut no_acc = service_request("FH003");
    no_acc["identifier"] = json!([]);
    let mut no_modality = service_request("FH004");
    no_modality["code"] = json!({ "text": "chest" });
    let mut bad_gender = service_request("FH005");
    bad_gender["contained"][0]["gender"] = json!("F");
    let mut dangling = service_request("FH006");
    dangling["subject"] = json!({ "reference": "#nobody" });
    for (sr, names) in [(no_status, "status"), (no_acc, "ACSN"), (no_modality, "modality"), (bad_gender, "gender"), (dangling, "#nobody")] {
        let (code, body) = hub.send(&tech, Method::POST, "/fhir/ServiceRequest", Some(sr)).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains(names), "{body}");
        assert_eq!(fhir_valid(&[&body]).await, vec!["ok"], "{body}");
    }
    let (code, body) = hub.send(&tech, Method::POST, "/fhir/ServiceRequest", Some(service_request("FH001"))).await;
    assert_eq!((code, body["issue"][0]["code"].as_str()), (409, Some("duplicate")), "{body}");
    let (code, body) = hub.send(&rad, Method::POST, "/fhir/ServiceRequest", Some(service_request("FH009"))).await;
    assert_eq!(code, 403, "a reader does not order: {body}");

    // the study comes and is read
    let dir = tempfile::tempdir().unwrap();
    let ds = common::synthetic_sc_with_accession(Some(b"ISO_IR 192"), "Wang^Wu=王^五".as_bytes(), "P-FHIR", &order.study_uid, &format!("{}.1.1", order.study_uid), Some("FH001"));
    let file = dir.path().join("fh.dcm");
    std::fs::write(&file, common::part10(common::SC, &format!("{}.1.1", order.study_uid), &ds)).unwrap();
    assert_eq!(hub.storescu("MOD1", &[], &[file]).await.0, 0);
    hub.eventually("ready", || async { hub.queue(&rad).await.iter().any(|i| i["patient_id"] == "P-FHIR" && i["state"] == "ready") }).await;
    let item = hub.queue(&rad).await.iter().find(|i| i["patient_id"] == "P-FHIR").unwrap()["id"].as_i64().unwrap();
    assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/claim"), None).await.0, 200);
    assert_eq!(hub.send(&rad, Method::PUT, &format!("/api/worklist/{item}/report"), Some(json!({"findings": "左侧第5肋骨折", "impression": "左侧第5肋骨骨折"}))).await.0, 200);
    assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/report/sign"), None).await.0, 200);

    // the site's system finds it by the patient's identifier, or by Patient/{id}
    let bundle = hub.get_json(&doc, "/fhir/DiagnosticReport?patient.identifier=P-FHIR").await;
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    assert_eq!(bundle["total"], 1, "{bundle}");
    let dr = &bundle["entry"][0]["resource"];
    assert_eq!((dr["status"].as_str(), dr["conclusion"].as_str()), (Some("final"), Some("左侧第5肋骨骨折")), "{dr}");
    assert_eq!(dr["basedOn"][0]["identifier"]["value"], "FH001", "{dr}");
    let patient_ref = dr["subject"]["reference"].as_str().unwrap().to_string();
    assert!(patient_ref.starts_with("Patient/"), "{dr}");
    let pdf_url = dr["presentedForm"][0]["url"].as_str().unwrap();
    let pdf = hub.get(&doc, pdf_url.trim_start_matches(&hub.base)).await;
    assert_eq!(pdf.status(), 200);
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
    let by_ref = hub.get_json(&doc, &format!("/fhir/DiagnosticReport?patient={patient_ref}")).await;
    assert_eq!(by_ref["total"], 1, "{by_ref}");
    let patient = hub.get_json(&doc, &format!("/fhir/{patient_ref}")).await;
    // the patient as the index holds it (what the modality sent: this one sent no sex or birth date)
    assert_eq!(patient["resourceType"], "Patient", "{patient}");
    assert_eq!(patient["name"][1]["text"], "王 五", "{patient}");
    assert_eq!(patient["identifier"][0]["value"], "P-FHIR", "{patient}");
    assert_eq!(fhir_valid(&[&bundle, &by_ref, &patient]).await, vec!["ok", "ok", "ok"]);
    // another site sees nothing of it
    let none = hub.get_json(&other, "/fhir/DiagnosticReport?patient.identifier=P-FHIR").await;
    assert_eq!(none["total"], 0, "{none}");
    assert_eq!(hub.get(&other, &format!("/fhir/{patient_ref}")).await.status(), 404);
    assert_eq!(hub.get(&other, &format!("/fhir/DiagnosticReport?patient={patient_ref}")).await.status(), 404);
    hub.stop().await;
}

on_both!(fhir_orders_in_reports_out);
