//! Two `readhub serve` processes on one PostgreSQL database and one bucket of a real
//! S3-compatible store (Garage): ingest on one, read, view and report on the other; sessions,
//! login throttles and cached credentials agree across the nodes; claims stay exclusive; the
//! cluster's jobs (ticker, webhooks, pre-rendering) run on one node; and when that node is
//! killed the other takes its jobs over and loses nothing acknowledged.

use super::*;

use sha2::Digest;

use super::served::{serve, Served};

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn cli_on(dir: &std::path::Path, db: &str, args: &[&str], stdin: Option<&str>) {
    let (ok, out) = super::readhub_cli(dir, Some(db), args, stdin);
    assert!(ok, "readhub {args:?}: {out}");
}

async fn login(node: &Served, user: &str, password: &str) -> (u16, Option<String>) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/login", node.http))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.ok().and_then(|v| v["token"].as_str().map(str::to_string)))
}

async fn call(node: &Served, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, format!("http://{}{path}", node.http)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn storescu(port: u16, files: &[std::path::PathBuf]) {
    let out = tokio::process::Command::new("storescu")
        .args(["-aet", "MODA", "-aec", "READHUB", "127.0.0.1", &port.to_string()])
        .args(files)
        .output()
        .await
        .expect("storescu (DCMTK, installed by scripts/test.sh)");
    assert!(out.status.success(), "storescu: {}", String::from_utf8_lossy(&out.stderr));
}

/// Which node holds each cluster job's lease now.
async fn lease_holders(db: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    let pool = sqlx::AnyPool::connect(db).await.unwrap();
    let now = storage::now_ms();
    let rows = sqlx::query("SELECT job, holder FROM cluster_leases WHERE expires_at > $1 ORDER BY job").bind(now).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_database_and_one_bucket() {
    if !common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster") || !common::peer_present("READHUB_TEST_S3_URL", "the Garage S3 node") {
        return;
    }
    let db = common::pg_database().await.unwrap();
    let objects = common::s3_url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    cli_on(dir_a.path(), &db, &["site", "add", "Township-A", "--ae", "MODA"], None);
    cli_on(dir_a.path(), &db, &["user", "add", "admin", "--role", "admin", "--password-stdin"], Some("admin-password-1\n"));
    cli_on(dir_a.path(), &db, &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password-1\n"));
    cli_on(dir_a.path(), &db, &["user", "add", "rad2", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password-2\n"));
    let env = |name: &'static str| {
        vec![
            ("READHUB_DATABASE_URL", db.clone()),
            ("READHUB_OBJECT_STORE_URL", objects.clone()),
            ("READHUB_NODE_NAME", name.to_string()),
            ("READHUB_NODE_TIMEOUT_SECS", "10".to_string()),
        ]
    };
    let env_a = env("node-a");
    let env_b = env("node-b");
    let a = serve(dir_a.path(), &as_refs(&env_a)).await;
    let b = serve(dir_b.path(), &as_refs(&env_b)).await;

    // 1. a film (7 MB: a multipart upload) and an MR series pushed to node a
    let cr = data("pydicom-data/RG1_UNCR.dcm");
    let mr = data("pydicom-data/MR2_UNCR.dcm");
    storescu(a.dimse_port, &[cr.clone(), mr.clone()]).await;
    let (cr_study, cr_series, cr_sop, _) = sop_of(&cr);
    let (mr_study, ..) = sop_of(&mr);

    // 2. read on node b: the queue, the bytes from the bucket (byte-identical), the report
    b.until_state(("rad1", "reader-password-1"), &cr_study, "ready", Duration::from_secs(20)).await;
    let (s, token) = login(&b, "rad1", "reader-password-1").await;
    assert_eq!(s, 200);
    let token = token.unwrap();
    let wado = |node: &Served| {
        reqwest::Client::new()
            .get(format!("http://{}/dicom-web/studies/{cr_study}/series/{cr_series}/instances/{cr_sop}", node.http))
            .bearer_auth(&token)
            .header("accept", "application/dicom; transfer-syntax=*")
            .send()
    };
    let from_b = wado(&b).await.unwrap();
    assert_eq!(from_b.status(), 200);
    let from_b = from_b.bytes().await.unwrap();
    let from_a = wado(&a).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha2::Sha256::digest(&from_b), sha2::Sha256::digest(&from_a), "both nodes serve the one stored copy");
    // the pixels are the modality's: the file ends with its pixel data and a 138-byte Data
    // Set Trailing Padding element, which storescu does not send
    let original = std::fs::read(&cr).unwrap();
    let end = original.len() - 138;
    let tail = &original[end - 4 * 1024 * 1024..end];
    assert!(from_b.ends_with(tail), "node b serves the pixels node a received");
    // the session opened on b works on a: nothing of it lives in one node's memory
    let (s, me) = call(&a, &token, Method::GET, "/api/me", None).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("rad1")));
    let queue = b.queue(("rad1", "reader-password-1")).await;
    let id = queue.iter().find(|i| i["study_instance_uid"] == cr_study.as_str()).unwrap()["id"].as_i64().unwrap();
    let (s, _) = call(&b, &token, Method::POST, &format!("/api/worklist/{id}/claim"), None).await;
    assert_eq!(s, 200);
    // claims stay exclusive across nodes
    let (_, token2) = login(&a, "rad2", "reader-password-2").await;
    let token2 = token2.unwrap();
    let (s, _) = call(&a, &token2, Method::POST, &format!("/api/worklist/{id}/claim"), None).await;
    assert_eq!(s, 409, "claimed on b, refused on a");
    let (s, v) = call(&b, &token, Method::PUT, &format!("/api/worklist/{id}/report"), Some(json!({ "findings": "双肺纹理清晰。", "impression": "未见异常。" }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&a, &token, Method::POST, &format!("/api/worklist/{id}/report/sign"), None).await;
    assert_eq!(s, 200, "signed through the other node: {v}");
    let (s, rep) = call(&b, &token, Method::GET, &format!("/api/worklist/{id}/report"), None).await;
    assert_eq!((s, rep["status"].as_str()), (200, Some("final")), "{rep}");

    // 3. the login throttle is the cluster's: failures spread over both nodes lock the name
    for n in 0..5 {
        let node = if n % 2 == 0 { &a } else { &b };
        assert_eq!(login(node, "rad2", "wrong-password").await.0, 422, "a wrong password (the API says 422)");
    }
    assert_eq!(login(&b, "rad2", "reader-password-2").await.0, 429, "locked on every node");
    // a password changed through one node ends the cached credential on the other
    let basic = |node: &Served, pw: &str| {
        reqwest::Client::new().get(format!("http://{}/dicom-web/studies", node.http)).basic_auth("rad1", Some(pw.to_string())).send()
    };
    assert_eq!(basic(&b, "reader-password-1").await.unwrap().status(), 200);
    let (_, admin) = login(&a, "admin", "admin-password-1").await;
    let admin = admin.unwrap();
    let (s, v) = call(&a, &admin, Method::PUT, "/api/admin/users/rad1/password", Some(json!({ "password": "reader-password-new" }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(basic(&b, "reader-password-1").await.unwrap().status(), 401, "the old password is refused on b at once");
    assert_eq!(basic(&b, "reader-password-new").await.unwrap().status(), 200);

    // 4. the cluster's jobs run on one node: every lease held by one of the two, and a
    //    critical result's webhook delivered once, not once per node
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    let (s, v) = call(&a, &admin, Method::PUT, "/api/admin/sites/Township-A/webhook", Some(json!({ "url": hook_url }))).await;
    assert_eq!(s, 200, "{v}");
    let holders = lease_holders(&db).await;
    assert_eq!(holders.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(), ["ticker", "webhooks"], "{holders:?}");
    assert!(holders.iter().all(|(_, h)| h == "node-a" || h == "node-b"), "{holders:?}");
    let (_, token) = login(&b, "rad1", "reader-password-new").await;
    let token = token.unwrap();
    let mr_id = {
        b.until_state(("rad1", "reader-password-new"), &mr_study, "ready", Duration::from_secs(20)).await;
        let q = b.queue(("rad1", "reader-password-new")).await;
        q.iter().find(|i| i["study_instance_uid"] == mr_study.as_str()).unwrap()["id"].as_i64().unwrap()
    };
    let (s, v) = call(&b, &token, Method::POST, &format!("/api/worklist/{mr_id}/critical"), Some(json!({ "finding": "急性脑梗死" }))).await;
    assert_eq!(s, 200, "{v}");
    let started = std::time::Instant::now();
    while received.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the webhook never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1, "delivered once by the cluster");

    // 5. the node running the cluster's jobs is killed: the other takes them over, and a
    //    study it then receives becomes ready (the ticker runs there now)
    let ticker_holder = lease_holders(&db).await.into_iter().find(|(j, _)| j == "ticker").unwrap().1;
    let (killed, survivor) = if ticker_holder == "node-a" { (a, b) } else { (b, a) };
    //    a modality is mid-study on it: one instance acknowledged, the association still open
    let (open_study, port) = ("1.2.826.0.1.3680043.8.498.16.77".to_string(), killed.dimse_port);
    let cut_off = synthetic_sc(None, b"Cut^Off", "CUT1", &open_study, "1.2.826.0.1.3680043.8.498.16.77.1");
    let open_assoc = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "MODA", &[(SC, &[EXPLICIT_LE])]).expect("association");
        assert_eq!(a.store(SC, "1.2.826.0.1.3680043.8.498.16.77.1", &cut_off).unwrap().status, 0);
        a
    })
    .await
    .unwrap();
    killed.kill9().await;
    drop(open_assoc);
    let started = std::time::Instant::now();
    loop {
        let holders = lease_holders(&db).await;
        let survivor_name = if ticker_holder == "node-a" { "node-b" } else { "node-a" };
        if holders.iter().filter(|(_, h)| h == survivor_name).count() == 2 {
            eprintln!("the survivor holds every cluster job {:?} after the kill", started.elapsed());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "jobs not taken over: {holders:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // the study whose association died with its node is ended by the survivor (its
    // heartbeat lapsed), not left for the stall horizon (600 s here)
    let waited = survivor.until_state(("rad1", "reader-password-new"), &open_study, "ready", Duration::from_secs(60)).await;
    eprintln!("the study cut off with its node was ready {waited:?} after the kill");
    let ct = data("pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm");
    storescu(survivor.dimse_port, std::slice::from_ref(&ct)).await;
    let (ct_study, ..) = sop_of(&ct);
    survivor.until_state(("rad1", "reader-password-new"), &ct_study, "ready", Duration::from_secs(30)).await;
    // everything acknowledged before the kill is still there, served by the survivor
    let q = survivor.queue(("rad1", "reader-password-new")).await;
    assert!(q.iter().any(|i| i["study_instance_uid"] == mr_study.as_str()), "{q:?}");
}

on_both!(renditions_claims_are_disjoint_and_lapse);

/// Pre-rendering runs on every node: each claims its own batch of instances (concurrent
/// claimers never get the same one), a finished instance is never claimed again, and a
/// claim whose node died lapses and is taken over.
async fn renditions_claims_are_disjoint_and_lapse(backend: Backend) {
    let hub = Hub::start_with(backend, |c| c.prerender = false).await;
    hub.site("Township-1", &["TOWNSHIP1"], None).await;
    let study = "1.2.826.0.1.3680043.8.498.16.88";
    for n in 1..=40 {
        assert_eq!(super::bounds::store_one(hub.dimse_port, study, &format!("{study}.{n}")).await, 0);
    }
    let db = hub.storage.db.clone();
    let now = storage::now_ms();
    let claim_for = Duration::from_secs(120);
    // four "nodes" claim at once, again and again, until nothing is left
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = storage::renditions::claim(&db, now, claim_for, 3).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.iter().map(|p| p.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let distinct: std::collections::BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every instance claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
    // done ones are never claimed again; the rest come back once their claim lapsed
    for id in distinct.iter().take(30) {
        storage::renditions::mark_done(&db, *id, now).await.unwrap();
    }
    assert!(storage::renditions::claim(&db, now + 1_000, claim_for, 100).await.unwrap().is_empty(), "claims still running");
    let again = storage::renditions::claim(&db, now + claim_for.as_millis() as i64 + 1, claim_for, 100).await.unwrap();
    assert_eq!(again.iter().map(|p| p.id).collect::<Vec<_>>(), distinct.iter().skip(30).copied().collect::<Vec<_>>());
    hub.stop().await;
}
