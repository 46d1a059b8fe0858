//! What operators and load balancers see: `/healthz`, `/readyz` (fails while the database is
//! away, recovers with it), `/metrics` (Prometheus text, behind its own token, moving after a
//! C-STORE and a signed report), and JSON log lines carrying the association's and the
//! request's ids.

use super::*;

use super::bounds::store_one;

/// The value of one sample line (`name{labels} value`) in a Prometheus page; 0 when absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or(0.0)
}

async fn metrics_page(hub: &Hub, token: &str) -> String {
    let r = reqwest::Client::new().get(format!("{}/metrics", hub.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_and_metrics() {
    let token = "a-long-random-metrics-token";
    let hub = Hub::start_with(Backend::Sqlite, |c| c.metrics_token = Some(token.into())).await;
    hub.site("Township-M", &["TOWNSHIPM"], None).await;
    let reader = hub.user("rad-m", Role::Reader, Some("imaging")).await;
    let anon = reqwest::Client::new();

    // health and readiness: no login, no patient data
    let r = anon.get(format!("{}/healthz", hub.base)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().trim().to_string()), (200, "ok".to_string()));
    let r = anon.get(format!("{}/readyz", hub.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // /metrics: its own bearer token, not a user's login
    assert_eq!(anon.get(format!("{}/metrics", hub.base)).send().await.unwrap().status(), 401);
    assert_eq!(anon.get(format!("{}/metrics", hub.base)).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(anon.get(format!("{}/metrics", hub.base)).basic_auth(&reader.0, Some(&reader.1)).send().await.unwrap().status(), 401);
    let before = metrics_page(&hub, token).await;

    // a C-STORE moves the counters, the C-STORE histogram and the queue
    let study = "1.2.826.0.1.3680043.8.498.160001";
    assert_eq!(store_one_from(hub.dimse_port, "TOWNSHIPM", study, &format!("{study}.1")).await, 0);
    let id = wait_ready(&hub, &reader, study, None).await;
    let after = metrics_page(&hub, token).await;
    let stored = r#"readhub_instances_received_total{site="Township-M",status="stored"}"#;
    assert_eq!(sample(&after, stored) - sample(&before, stored), 1.0, "{after}");
    assert!(sample(&after, r#"readhub_received_bytes_total{site="Township-M"}"#) > 100.0);
    let cstores = r#"readhub_cstore_duration_seconds_count{status="success"}"#;
    assert!(sample(&after, cstores) >= sample(&before, cstores) + 1.0, "{after}");
    assert_eq!(sample(&after, r#"readhub_worklist_items{pool="imaging",state="ready"}"#), 1.0, "{after}");
    assert_eq!(sample(&before, r#"readhub_worklist_items{pool="imaging",state="ready"}"#), 0.0);
    assert!(after.contains("readhub_dicom_associations_open"), "{after}");
    assert!(after.contains(r#"readhub_background_backlog{job="renditions"}"#));
    assert!(after.contains(r#"readhub_db_pool_connections{state="idle"}"#));
    assert!(after.contains("readhub_critical_results_unacknowledged 0"));
    // HTTP by route pattern: never a study UID (patient data, unbounded) in a label
    assert!(after.contains(r#"readhub_http_requests_total{method="GET",route="/api/worklist",status="200"}"#), "{after}");
    assert!(!after.contains(study), "a study UID in the metrics");

    // an instance cut off mid-way (the modality aborts the association) is counted as aborted
    let port = hub.dimse_port;
    tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "TOWNSHIPM", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let (pc, _) = a.context(SC).unwrap();
        let data = synthetic_sc(None, b"Cut^Short", "CUT2", "1.2.826.0.1.3680043.8.498.160003", "1.2.826.0.1.3680043.8.498.160003.1");
        a.send_store(pc, SC, "1.2.826.0.1.3680043.8.498.160003.1", &data[..data.len() / 2], false).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        a.abort();
    })
    .await
    .unwrap();
    let aborted = r#"readhub_instances_received_total{site="Township-M",status="aborted"}"#;
    let started = std::time::Instant::now();
    while sample(&metrics_page(&hub, token).await, aborted) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the cut-off instance was not counted as aborted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!after.contains("Disk^Full"), "a patient name in the metrics");

    // a signed report: the queue empties and the turnaround histogram counts it
    let (s, _) = hub.send(&reader, Method::POST, &format!("/api/worklist/{id}/claim"), None).await;
    assert_eq!(s, 200);
    let (s, _) = hub.send(&reader, Method::PUT, &format!("/api/worklist/{id}/report"), Some(json!({ "findings": "f", "impression": "无异常" }))).await;
    assert_eq!(s, 200);
    let (s, _) = hub.send(&reader, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
    assert_eq!(s, 200);
    let signed = metrics_page(&hub, token).await;
    assert_eq!(sample(&signed, r#"readhub_worklist_items{pool="imaging",state="ready"}"#), 0.0);
    let tat = r#"readhub_turnaround_seconds_count{priority="routine"}"#;
    assert!(sample(&signed, tat) >= sample(&after, tat) + 1.0, "{signed}");
    hub.stop().await;

    // without a token /metrics is off
    let off = Hub::start(Backend::Sqlite).await;
    assert_eq!(reqwest::get(format!("{}/metrics", off.base)).await.unwrap().status(), 404);
    off.stop().await;
}

async fn store_one_from(port: u16, ae: &str, study: &str, sop: &str) -> u16 {
    let data = synthetic_sc(None, b"Disk^Full", "DF1", study, sop);
    let (ae, sop) = (ae.to_string(), sop.to_string());
    tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, &ae, &[(SC, &[EXPLICIT_LE])]).expect("association");
        let r = a.store(SC, &sop, &data).expect("C-STORE");
        a.release();
        r.status
    })
    .await
    .unwrap()
}

/// `/readyz` says no while PostgreSQL is away (and why), and yes again once it is back;
/// `/healthz` says the process lives throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_database() {
    if !common::peer_present("READHUB_TEST_PG_URL", "PostgreSQL") {
        return;
    }
    let (hub, link) = super::bounds::hub_behind_a_db_link().await;
    let ready = || async { reqwest::get(format!("{}/readyz", hub.base)).await.unwrap() };
    assert_eq!(ready().await.status(), 200);

    link.down();
    let started = std::time::Instant::now();
    // an answer is given again for up to a second (readyz asks the database at most that often)
    let r = loop {
        let r = ready().await;
        if r.status() != 200 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still ready 5 s after the database went away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("database"), "says what is not ready: {body}");
    assert!(started.elapsed() < Duration::from_secs(10), "answers no promptly: {:?}", started.elapsed());
    assert_eq!(reqwest::get(format!("{}/healthz", hub.base)).await.unwrap().status(), 200, "alive, only not ready");

    link.up();
    let back = std::time::Instant::now();
    while ready().await.status() != 200 {
        assert!(back.elapsed() < Duration::from_secs(30), "not ready 30 s after the database came back");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let study = "1.2.826.0.1.3680043.8.498.160002";
    assert_eq!(store_one(hub.dimse_port, study, &format!("{study}.1")).await, 0, "and it takes work again");
    hub.stop().await;
}

/// `READHUB_LOG_FORMAT=json`: every line is a JSON object; lines logged inside an
/// association carry its id, lines inside an HTTP request its request id (the load
/// balancer's, when it sent one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_carry_association_and_request_ids() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    super::served::cli(dir.path(), &["site", "add", "Township-J", "--ae", "TOWNSHIPJ"], None);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_readhub"))
        .arg("serve")
        .env("READHUB_DATA_DIR", dir.path())
        .env_remove("READHUB_DATABASE_URL")
        .env("READHUB_DICOM_ADDR", "127.0.0.1:0")
        .env("READHUB_HTTP_ADDR", "127.0.0.1:0")
        .env("READHUB_LOG", "info")
        .env("READHUB_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let (mut http, mut dimse) = (String::new(), 0u16);
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["fields"]["message"] == "readhub listening" {
            http = v["fields"]["http.addr"].as_str().unwrap().to_string();
            dimse = v["fields"]["dimse.addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            break;
        }
        seen.push(v);
    }
    assert!(dimse != 0, "the listening line names its addresses: {seen:?}");
    let study = "1.2.826.0.1.3680043.8.498.160003";
    assert_eq!(store_one_from(dimse, "TOWNSHIPJ", study, &format!("{study}.1")).await, 0);
    // a request the proxy named, and one it did not
    let r = reqwest::Client::new().post(format!("http://{http}/api/login")).header("x-request-id", "lb-42").json(&json!({"username": "nobody", "password": "x"})).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-42", "the request id goes back with the answer");
    let r = reqwest::get(format!("http://{http}/api/me")).await.unwrap();
    let minted = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(minted.len() >= 32, "a new request id when none was sent: {minted:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut assoc_lines, mut lb_lines, mut minted_lines) = (0, 0, 0);
    while std::time::Instant::now() < deadline && (assoc_lines == 0 || lb_lines == 0 || minted_lines == 0) {
        let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        if msg == "C-STORE stored" {
            assert!(v["span"]["dimse.id"].is_u64(), "the association id in the line: {v}");
            assoc_lines += 1;
        }
        if v["span"]["http.request_id"] == "lb-42" {
            lb_lines += 1;
        }
        if v["span"]["http.request_id"] == minted.as_str() {
            minted_lines += 1;
        }
    }
    assert!(assoc_lines > 0, "no C-STORE line with its association id");
    assert!(lb_lines > 0 && minted_lines > 0, "request lines with their ids: {lb_lines} {minted_lines}");
    let _ = child.kill().await;
}
