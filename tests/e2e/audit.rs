//! The audit trail: every read and change of patient data is recorded with who, role,
//! site or pool, client address, action, study, patient and outcome; admins query it by
//! user, patient, study, action and time, page it and export it (CSV, NDJSON); nobody
//! changes or deletes a row, not even with SQL.

use super::*;

/// The trail rows the admin gets for `query` (one page of up to 1,000).
async fn trail(hub: &Hub, admin: &(String, String), query: &str) -> Vec<Value> {
    let v = hub.get_json(admin, &format!("/api/admin/audit?limit=1000&{query}")).await;
    v["entries"].as_array().unwrap().clone()
}

fn actions(rows: &[Value]) -> std::collections::BTreeSet<String> {
    rows.iter().map(|r| r["action"].as_str().unwrap().to_string()).collect()
}

async fn audit_trail_of_access(backend: Backend) {
    // the site's audit record repository: a syslog receiver on UDP
    let repository = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let syslog = format!("udp://{}", repository.local_addr().unwrap());
    let hub = Hub::start_with(backend, |c| c.audit_syslog_addr = Some(syslog)).await;
    hub.site("Township-A", &["MODA"], None).await;
    let rad = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let doc = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let study = "1.2.826.0.1.3680043.10.9.801";
    let patient = "P-AUDIT-1";

    // the modality sends; the reader finds, views, reads, reports, signs, flags
    let id = ready_item(&hub, "MODA", &rad, patient, study).await;
    let sop = format!("{study}.1");
    let series = {
        let v = hub.get_json(&rad, &format!("/dicom-web/studies/{study}/series")).await;
        v[0]["0020000E"]["Value"][0].as_str().unwrap().to_string()
    };
    hub.get_json(&rad, &format!("/dicom-web/studies?PatientID={patient}")).await;
    let inst = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    for path in [inst.clone(), format!("{inst}/metadata"), format!("{inst}/rendered"), format!("/dicom-web/studies/{study}")] {
        let r = hub.get_accept(&rad, &path, "*/*").await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().await.unwrap();
    }
    hub.get_json(&rad, &format!("/api/worklist/{id}")).await;
    hub.get_json(&rad, &format!("/api/worklist/{id}/priors")).await;
    assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{id}/claim"), None).await.0, 200);
    let body = json!({"findings": "右侧气胸。", "impression": "右侧大量气胸。"});
    assert_eq!(hub.send(&rad, Method::PUT, &format!("/api/worklist/{id}/report"), Some(body)).await.0, 200);
    let (code, signed) = hub.send(&rad, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
    assert_eq!(code, 200, "{signed}");
    let (code, critical) = hub.send(&rad, Method::POST, &format!("/api/worklist/{id}/critical"), Some(json!({"finding": "右侧大量气胸"}))).await;
    assert_eq!(code, 200, "{critical}");

    // the referring doctor reads, prints, downloads and acknowledges
    let reports = hub.get_json(&doc, "/api/reports").await;
    let report_id = reports.as_array().unwrap().iter().find(|r| r["study_instance_uid"] == study).expect("the report")["id"].as_i64().unwrap();
    for path in [format!("/api/reports/{report_id}"), format!("/api/reports/{report_id}/print"), format!("/api/reports/{report_id}/pdf")] {
        let r = hub.get(&doc, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
    }
    let (code, v) = hub.send(&doc, Method::POST, &format!("/api/critical/{}/ack", critical["id"]), None).await;
    assert_eq!(code, 200, "{v}");

    // the technician stores by STOW
    let stow_study = "1.2.826.0.1.3680043.10.9.802";
    let part = common::synthetic_sc_with_accession(None, b"Stow^Audit", "P-AUDIT-2", stow_study, &format!("{stow_study}.1"), None);
    let (code, v) = stow(&hub, &tech, &[("application/dicom", common::part10(SC, &format!("{stow_study}.1"), &part))]).await;
    assert_eq!(code, 200, "{v}");

    // logins: one right, one wrong; a logout; and a reader who may not see the audit trail
    let ok = hub.http().post(format!("{}/api/login", hub.base)).json(&json!({"username": "doc-a", "password": doc.1})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let token = ok.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let bad = hub.http().post(format!("{}/api/login", hub.base)).json(&json!({"username": "doc-a", "password": "wrong-password"})).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let out = hub.http().post(format!("{}/api/logout", hub.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(hub.get(&rad, "/api/admin/audit").await.status(), 403, "only admins read the trail");
    // a change of a user
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/users/tech-a/disabled", Some(json!({"disabled": true}))).await;
    assert_eq!(code, 200, "{v}");

    // a request with no credentials at all touched nothing and is not recorded (anyone
    // could fill the trail so); a wrong password is
    let r = hub.http().get(format!("{}/dicom-web/studies?PatientID=ANON-PROBE", hub.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = hub.http().get(format!("{}/dicom-web/studies?PatientID=WRONG-PW-PROBE", hub.base)).basic_auth("rad1", Some("wrong")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let probes = trail(&hub, &admin, "action=query").await;
    assert!(!probes.iter().any(|r| r["detail"].as_str().unwrap().contains("ANON-PROBE")), "{probes:?}");
    assert!(probes.iter().any(|r| r["detail"].as_str().unwrap().contains("WRONG-PW-PROBE") && r["username"] == "rad1" && r["outcome"] == "denied"), "{probes:?}");

    // by patient: every access to P-AUDIT-1's data, with its study and issuer
    let rows = trail(&hub, &admin, &format!("patient_id={patient}")).await;
    let want = ["dicom_store", "query", "retrieve", "metadata", "rendered", "item_view", "report_edit", "report_sign", "critical_flag",
        "report_view", "report_print", "report_pdf", "critical_ack", "item_change"];
    let got = actions(&rows);
    for a in want {
        assert!(got.contains(a), "no {a} for the patient: {got:?}");
    }
    for r in &rows {
        assert!(r["study_uid"] == study || r["action"] == "query", "{r}");
        assert!(r["patient_issuer"].as_str().is_some_and(|i| !i.is_empty()) || r["action"] == "query", "{r}");
        assert!(r["client"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
    }
    let store = rows.iter().find(|r| r["action"] == "dicom_store").unwrap();
    assert_eq!(store["site"], "Township-A");
    assert!(store["detail"].as_str().unwrap().contains("MODA"), "{store}");
    let sign = rows.iter().find(|r| r["action"] == "report_sign").unwrap();
    assert_eq!((sign["username"].as_str(), sign["role"].as_str(), sign["pool"].as_str(), sign["outcome"].as_str()),
        (Some("rad1"), Some("reader"), Some("imaging"), Some("success")));
    let print = rows.iter().find(|r| r["action"] == "report_print").unwrap();
    assert_eq!((print["username"].as_str(), print["site"].as_str()), (Some("doc-a"), Some("Township-A")));

    // by user, by study, by action, by time
    let rows = trail(&hub, &admin, "user=rad1").await;
    assert!(!rows.is_empty() && rows.iter().all(|r| r["username"] == "rad1"));
    let rows = trail(&hub, &admin, &format!("study={stow_study}")).await;
    assert_eq!(actions(&rows), ["store".to_string()].into(), "{rows:?}");
    assert_eq!(rows[0]["username"], "tech-a");
    assert_eq!(rows[0]["patient_id"], "P-AUDIT-2");
    let logins = trail(&hub, &admin, "action=login").await;
    assert!(logins.iter().any(|r| r["username"] == "doc-a" && r["outcome"] == "success"), "{logins:?}");
    assert!(logins.iter().any(|r| r["username"] == "doc-a" && r["outcome"] == "denied"), "a failed login names the name it tried: {logins:?}");
    assert!(trail(&hub, &admin, "action=logout").await.iter().any(|r| r["username"] == "doc-a"));
    let changes = trail(&hub, &admin, "action=user_change").await;
    assert!(changes.iter().any(|r| r["username"] == "admin" && r["detail"].as_str().unwrap().contains("tech-a")), "{changes:?}");
    let denied = trail(&hub, &admin, "action=audit_read&user=rad1").await;
    assert!(denied.iter().any(|r| r["outcome"] == "denied"), "{denied:?}");
    assert!(trail(&hub, &admin, "to=2000-01-01").await.is_empty());
    assert!(!trail(&hub, &admin, &format!("from={}", chrono_today())).await.is_empty());
    assert_eq!(hub.get(&admin, "/api/admin/audit?action=nonsense").await.status(), 400);
    assert_eq!(hub.get(&admin, "/api/admin/audit?from=yesterday").await.status(), 400);
    assert_eq!(hub.get(&admin, "/api/admin/audit/export?format=xlsx").await.status(), 400);
    assert_eq!(hub.get(&admin, "/api/admin/audit?nonsense=1").await.status(), 400, "unknown filters are refused, not ignored");

    // newest first, paged
    let all = trail(&hub, &admin, "").await;
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let page1 = hub.get_json(&admin, "/api/admin/audit?limit=3").await;
    let before = page1["next_before"].as_i64().expect("a next page");
    let page2 = hub.get_json(&admin, &format!("/api/admin/audit?limit=3&before={before}")).await;
    assert!(page2["entries"].as_array().unwrap().iter().all(|r| r["id"].as_i64().unwrap() < before));

    // export: CSV (with a header, one line per row, Chinese intact) and NDJSON, same rows
    let q = format!("patient_id={patient}");
    let csv = hub.get(&admin, &format!("/api/admin/audit/export?format=csv&{q}")).await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("readhub-audit.csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert!(lines[0].trim_start_matches('\u{feff}').starts_with("id,time_utc,username,role,site"), "{}", lines[0]);
    let nd = hub.get(&admin, &format!("/api/admin/audit/export?format=ndjson&{q}")).await.text().await.unwrap();
    let nd: Vec<Value> = nd.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // the export itself was recorded between the two calls, but not under this patient
    assert_eq!(nd.len(), lines.len() - 1);
    assert!(nd.len() >= want.len());
    assert!(nd.iter().all(|r| r["patient_id"] == patient));

    // what the command line changes is recorded too, with the operating-system user
    let (ok, out) = super::readhub_cli(hub.data_dir(), hub.config.database_url.as_deref(), &["user", "disable", "doc-a"], None);
    assert!(ok, "{out}");
    let rows = trail(&hub, &admin, "action=user_change").await;
    assert!(
        rows.iter().any(|r| r["username"].as_str().unwrap().starts_with("cli:") && r["detail"].as_str().unwrap().contains("user disable doc-a")),
        "{rows:?}"
    );

    // the same events reached the repository as DICOM audit messages in RFC 5424 syslog;
    // an independent XML parser (Python's) reads them
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), repository.recv(&mut buf)).await {
        messages.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 syslog"));
    }
    assert!(messages.len() >= want.len(), "{} syslog messages", messages.len());
    let file = hub.data_dir().join("syslog.txt");
    std::fs::write(&file, messages.join("\n\u{1e}\n")).unwrap();
    let check = r#"
import sys, re, xml.etree.ElementTree as ET
codes, patients = set(), set()
for m in open(sys.argv[1], encoding="utf-8").read().split("\n\x1e\n"):
    head, xml = m.split("\ufeff", 1)
    assert re.match(r"^<85>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ readhub \d+ IHE\+RFC-3881 - $", head), head
    root = ET.fromstring(xml.encode())
    assert root.tag == "AuditMessage"
    codes.add(root.find("EventIdentification/EventID").get("csd-code"))
    for p in root.findall("ParticipantObjectIdentification"):
        if p.get("ParticipantObjectTypeCode") == "1":
            patients.add(p.get("ParticipantObjectID"))
    assert root.find("AuditSourceIdentification").get("AuditSourceID") == "READHUB"
print(" ".join(sorted(codes)), "|", " ".join(sorted(patients)))
"#;
    let out = std::process::Command::new(common::python()).arg("-c").arg(check).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for code in ["110103", "110104", "110110", "110112", "110114"] {
        assert!(text.contains(code), "no DICOM audit event {code}: {text}");
    }
    assert!(text.contains(&format!("{patient}^^^&READHUB:Township-A")), "the patient as ID^^^&issuer: {text}");

    // append-only: not even SQL on the database changes or removes a row
    let db = hub.storage.db.pool();
    assert!(sqlx::query("UPDATE audit_log SET outcome = 'success' WHERE outcome = 'denied'").execute(db).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_log").execute(db).await.is_err());
    let n: i64 = sqlx::Row::get(&sqlx::query("SELECT COUNT(*) FROM audit_log").fetch_one(db).await.unwrap(), 0);
    assert!(n as usize >= all.len());
    hub.stop().await;
}

on_both!(audit_trail_of_access);
