//! The readhub binary: CLI, configuration layering, serve and stop.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_cli_and_serve() {
    let bin = env!("CARGO_BIN_EXE_readhub");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| readhub_cli(dir.path(), None, args, stdin);
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
    // the site's HIS, as HL7 names it (MSH-3[@MSH-4])
    let (ok, out) = run(&["site", "add", "Township-H", "--ae", "MODH", "--hl7-sender", "his@township-h"], None);
    assert!(ok && out.contains("HIS@TOWNSHIP-H"), "{out}");
    let (ok, out) = run(&["site", "add-hl7-sender", "Township-A", "HIS-A"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["site", "add-hl7-sender", "Township-A", "HIS@TOWNSHIP-H"], None);
    assert!(!ok && out.contains("already belongs"), "{out}");
    let (ok, out) = run(&["site", "add-hl7-sender", "Township-A", "BAD|APP"], None);
    assert!(!ok && out.contains("HL7 sender"), "{out}");
    let (ok, out) = run(&["site", "remove-hl7-sender", "Township-H", "HIS@TOWNSHIP-H"], None);
    assert!(ok, "{out}");
    // a county workstation with the imaging pool, and where it listens (a C-MOVE destination)
    let (ok, out) = run(&["pool", "add-ae", "imaging", "COUNTYWS1"], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["pool", "add-ae", "imaging", "MODA"], None);
    assert!(!ok && out.contains("belongs to a site"), "{out}");
    let (ok, out) = run(&["site", "set-address", "COUNTYWS1", "10.0.0.9:11112"], None);
    assert!(ok && out.contains("10.0.0.9:11112"), "{out}");
    let (ok, out) = run(&["site", "set-address", "UNKNOWN", "10.0.0.9:11112"], None);
    assert!(!ok && out.contains("not registered"), "{out}");
    // where its reports go
    let (ok, out) = run(&["site", "outbound", "Township-H", "--hl7", "10.0.0.5:2575", "--pacs", "COUNTYPACS@10.0.0.6:104"], None);
    assert!(ok && out.contains("HL7 10.0.0.5:2575") && out.contains("PACS COUNTYPACS@10.0.0.6:104"), "{out}");
    let (ok, out) = run(&["site", "outbound", "Township-H", "--fhir", "ftp://x"], None);
    assert!(!ok && out.contains("base URL"), "{out}");
    let (ok, out) = run(&["site", "list"], None);
    assert!(ok && out.contains("Township-A") && out.contains("MODA,MODA2") && out.contains("GBK") && out.contains("HL7: HIS-A"), "{out}");
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

/// On SIGTERM the DICOM port closes at once: a modality that connects while the hub drains
/// is refused rather than left without an answer; the association already open finishes
/// its work and what it stored is kept; then the hub exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_closes_the_dicom_port_and_finishes_open_work() {
    let dir = tempfile::tempdir().unwrap();
    served::cli(dir.path(), &["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    served::cli(dir.path(), &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
    let mut hub = served::serve(dir.path(), &[]).await;
    let port = hub.dimse_port;
    // a modality between two films: its association is open
    let mut scu = tokio::task::spawn_blocking(move || scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).expect("association"))
        .await
        .unwrap();
    let pid = hub.child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let start = std::time::Instant::now();
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) => {
                // refused, or reset: a SYN that reached the listen queue just as the port
                // closed is answered with a reset; either way the hub took no connection
                assert!(
                    matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset),
                    "{e}"
                );
                break;
            }
            Ok(_) => {
                assert!(start.elapsed() < Duration::from_secs(10), "the DICOM port still accepts connections after SIGTERM");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // the open association still stores, and is answered
    let study = "1.2.826.0.1.3680043.8.498.71001";
    let data = synthetic_sc(None, b"Draining^Hub", "PD1", study, "1.2.826.0.1.3680043.8.498.71001.1");
    let r = tokio::task::spawn_blocking(move || {
        let r = scu.store(SC, "1.2.826.0.1.3680043.8.498.71001.1", &data).expect("C-STORE while draining");
        scu.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), hub.child.wait()).await.expect("exits after the drain").unwrap();
    assert!(status.success(), "{status:?}");
    // what was acknowledged during the drain is kept, and reaches the reader
    let hub = served::serve(dir.path(), &[]).await;
    hub.until_state(("rad1", "radiologist-pw"), study, "ready", Duration::from_secs(30)).await;
    hub.kill9().await;
}

/// `readhub user disable` and `enable` act on a running hub's database: a disabled
/// account cannot sign in, an enabled one can.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_disables_and_enables_an_account() {
    use super::served::{cli, serve};
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
    cli(dir.path(), &["user", "disable", "rad1"], None);
    let hub = serve(dir.path(), &[]).await;
    let login = || async {
        reqwest::Client::new()
            .post(format!("http://{}/api/login", hub.http))
            .json(&json!({ "username": "rad1", "password": "radiologist-pw" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(login().await, 422, "disabled");
    cli(dir.path(), &["user", "enable", "rad1"], None);
    assert_eq!(login().await, 200, "enabled again");
    hub.kill9().await;
}
