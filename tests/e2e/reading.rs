//! Reading: the worklist: SLA clocks, leases, routing, rejection, claims under
//! contention, auto-assignment, the directory, several processes on one database.

use super::*;

on_both!(sla_clocks_leases_and_supervision, routing_rules_and_fallback, quality_rejection_and_retake, auto_assign_to_on_duty_qualified_readers, claim_next_under_contention, directory_api);
on_s3!(claim_next_under_contention);

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
    assert!(hub.worklist.report_for_item(worklist::ItemId::new(mr)).await.unwrap().is_none(), "nothing written");

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
    assert_eq!(v["acknowledged_by"], chief.id.get());
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
    assert_eq!(v["claimed_by"], rad2.id.get());
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
        for pool in [ct_pool, imaging.id.get()] {
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
    assert_eq!(mr["pool_id"], imaging.id.get(), "unmatched imaging goes to the imaging pool");
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
    if backend.on_postgres() {
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
    if !common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster") {
        return;
    }
    let db_url = common::pg_database().await.expect("a fresh PostgreSQL database");
    let bin = env!("CARGO_BIN_EXE_readhub");
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let (ok, out) = readhub_cli(dir.path(), Some(&db_url), args, stdin);
        assert!(ok, "{args:?}: {out}");
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
    let day_id = hub.worklist.user_by_name("day").await.unwrap().unwrap().id.get();
    let night_id = hub.worklist.user_by_name("night").await.unwrap().unwrap().id.get();
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
    // evening: "day" goes off duty and finishes; the next item goes to "night". (The clock
    // moves first: signing at 10:00 freed "day", and a tick between the signature and the
    // clock's move could push the item to them, still on duty.)
    let first = claimed[0]["id"].as_i64().unwrap();
    clock.advance(11 * 60 * MIN); // 21:00
    hub.send(&day, Method::PUT, &format!("/api/worklist/{first}/report"), Some(json!({ "impression": "未见异常。" }))).await;
    assert_eq!(hub.send(&day, Method::POST, &format!("/api/worklist/{first}/report/sign"), None).await.0, 200);
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
                mine.push(item.id.get());
            }
            mine
        }));
    }
    each_claimed_once(tasks, N).await;
    hub.stop().await;
}
