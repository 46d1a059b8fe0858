//! Reports: the reading loop end to end, two-level sign-off, critical results, priors,
//! templates and turnaround.

use super::*;

on_both!(read_report_flow, two_level_signoff_addendum_and_correction, critical_result_chain, priors_templates_and_turnaround);
on_s3!(read_report_flow);

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
    let trail: Vec<String> = hub.worklist.events(worklist::ItemId::new(id)).await.unwrap().iter().map(|e| e.0.to_string()).collect();
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
    // the worklist takes arrivals off the queue in rounds (at most every 100 ms in a burst)
    hub.eventually("the new image flags the reported study", || async {
        hub.get_json(&admin, &format!("/api/worklist/{id}")).await["item"]["new_images_after_report"] == true
    })
    .await;
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
    let junior_id = hub.worklist.user_by_name("junior").await.unwrap().unwrap().id.get();
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
    let doc_id = hub.worklist.user_by_name("doc-a").await.unwrap().unwrap().id.get();
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
    let prior_report = priors[0]["report_id"].as_i64().unwrap();
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
    // an ECG of the same patient goes to the ECG pool: its reader does not read the imaging
    // pool's report through the ECG item's priors (every direct route to it answers 404)
    let ecg_reader = hub.user("ecg1", Role::Reader, Some("ecg")).await;
    let ecg_file = {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        let mut obj = dicom_object::open_file(data("pydicom/test_files/waveform_ecg.dcm")).unwrap();
        let sop = "1.2.826.0.1.3680043.10.9.704.1.1";
        for (tag, vr, v) in [
            (tags::PATIENT_ID, VR::LO, "P-PRIOR"),
            (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.9.704"),
            (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.9.704.1"),
            (tags::SOP_INSTANCE_UID, VR::UI, sop),
        ] {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        }
        obj.meta_mut().media_storage_sop_instance_uid = sop.to_string();
        let path = std::env::temp_dir().join(format!("readhub-prior-ecg-{}.dcm", uuid::Uuid::new_v4()));
        obj.write_to_file(&path).unwrap();
        path
    };
    let (code, out) = hub.storescu("MODA", &[], &[ecg_file.clone()]).await;
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_file(ecg_file);
    let ecg_item = wait_ready(&hub, &ecg_reader, "1.2.826.0.1.3680043.10.9.704", None).await;
    let ecg_priors = hub.get_json(&ecg_reader, &format!("/api/worklist/{ecg_item}/priors")).await;
    assert!(
        ecg_priors.as_array().unwrap().iter().all(|p| p["impression"].is_null() && p["report_id"].is_null()),
        "an ECG reader sees no imaging report through priors: {ecg_priors}"
    );
    let (report_id, status) = (prior_report, hub.get(&ecg_reader, &format!("/api/reports/{prior_report}")).await.status());
    assert_eq!(status, 404, "report {report_id}: the direct route agrees");
    // and the admin sees every prior with its report
    let all = hub.get_json(&admin, &format!("/api/worklist/{ecg_item}/priors")).await;
    assert!(all.as_array().unwrap().iter().any(|p| p["impression"] == "第一次：未见异常。"), "{all}");
    hub.stop().await;
}
