//! Bounds the hub enforces whatever clients ask, checked on the real binary: the memory
//! that decoding may hold (peak RSS read from /proc), and that the hub answers afterwards.

use super::*;

use std::path::Path;

use super::served::{cli, serve};

const READER: (&str, &str) = ("rad1", "radiologist-pw");

fn set_up(dir: &Path) {
    cli(dir, &["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    cli(dir, &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
}

/// A native 16-bit monochrome DX of `rows` × `columns` with a gradient, as a data set.
fn large_dx(study: &str, sop: &str, rows: u16, columns: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(rows) * u32::from(columns)).flat_map(|i| ((i % 4096) as u16).to_le_bytes()).collect();
    common::mono16_image(study, sop, b"DX", (b"Large^Film", "BIG1"), rows, columns, &pixels)
}

/// The peak resident set of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kb / 1024
}

/// Sixteen concurrent full-size renders of a 2500×3000 16-bit film (each holds ~130 MiB
/// while it decodes; 8 of them took RSS to 720 MiB) queue behind the decoding budget: they
/// are answered in turn, peak RSS stays under 512 MiB, and C-ECHO and QIDO answer afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_full_renders_stay_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let hub = serve(dir.path(), &[]).await;
    let study = "1.2.826.0.1.3680043.8.498.75001";
    let sop = format!("{study}.1.1");
    let data = large_dx(study, &sop, 3000, 2500);
    let port = hub.dimse_port;
    let s = sop.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(SC, &s, &data).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    let before = peak_rss_mib(hub.child.id().unwrap());
    let client = reqwest::Client::new();
    let url = format!("http://{}/dicom-web/studies/{study}/series/{study}.1/instances/{sop}/rendered", hub.http);
    let renders = (0..16).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let r = client.get(url).header("accept", "image/jpeg").basic_auth(READER.0, Some(READER.1)).send().await.unwrap();
            let retry_after = r.headers().contains_key("retry-after");
            (r.status().as_u16(), retry_after, r.bytes().await.unwrap().len())
        })
    });
    let mut rendered = 0;
    for r in futures::future::join_all(renders).await {
        // each is rendered in turn; on a loaded machine (a debug build beside the rest of
        // the suite) the last may wait longer than the budget's 60 s and hear 503 with
        // Retry-After, which is the hub's answer to too much at once
        match r.unwrap() {
            (200, _, len) => {
                assert!(len > 1000, "a JPEG of {len} bytes");
                rendered += 1;
            }
            (503, true, _) => {}
            other => panic!("a render answered {other:?}"),
        }
    }
    assert!(rendered >= 4, "only {rendered} of 16 renders were answered within the wait");
    let peak = peak_rss_mib(hub.child.id().unwrap());
    eprintln!("peak RSS before the renders {before} MiB, after 16 concurrent renders {peak} MiB");
    assert!(peak < 512, "peak RSS {peak} MiB under 16 concurrent full renders (bound 512 MiB)");
    let (ok, out) = echo(port, "TOWNSHIP1").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    let q = client.get(format!("http://{}/dicom-web/studies?PatientID=BIG1", hub.http)).basic_auth(READER.0, Some(READER.1)).send().await.unwrap();
    assert_eq!(q.status(), 200);
    hub.kill9().await;
}

/// A STOW-RS upload that stalls mid-body (a broken township link, or an attacker holding
/// connections) is ended after the body idle timeout with an error; what was not stored
/// leaves nothing behind, and the hub answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_upload_is_ended() {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = Hub::start_with(Backend::Sqlite, |c| c.body_idle_timeout_secs = 2).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let study = "1.2.826.0.1.3680043.8.498.75002";
    let (ct, body) = multipart(&[("application/dicom", common::part10(SC, &format!("{study}.1"), &synthetic_sc(None, b"Stalled^Upload", "ST1", study, &format!("{study}.1"))))]);
    let addr = hub.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", tech.0, tech.1));
    let head = format!(
        "POST /dicom-web/studies HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..body.len() / 2]).await.unwrap(); // half the body, then silence
    let start = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut answer)).await.expect("answered, not left hanging").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(start.elapsed() >= Duration::from_secs(1), "after the idle timeout, not before");
    let found = hub.get_json(&admin, &format!("/dicom-web/studies?StudyInstanceUID={study}")).await;
    assert_eq!(found.as_array().map(Vec::len), Some(0), "nothing half-stored: {found}");
    let (ok, out) = echo(hub.dimse_port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}

/// A STOW-RS request with more parts than one request may carry (10,000) is read up to the
/// cap: the stored parts are reported, and one failure says where reading stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_part_count_is_capped() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let tech = hub.user("tech-a", Role::Technician, Some("Township-A")).await;
    let study = "1.2.826.0.1.3680043.8.498.75003";
    let sop = format!("{study}.1");
    let mut parts = vec![("application/dicom", common::part10(SC, &sop, &synthetic_sc(None, b"Many^Parts", "MP1", study, &sop)))];
    parts.extend((0..10_005).map(|_| ("text/plain", b"x".to_vec())));
    let (status, v) = stow(&hub, &tech, &parts).await;
    assert_eq!(status, 202, "one stored, the rest refused or not read");
    let failed = v["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 10_000, "9,999 refused parts and one saying where reading stopped");
    let last = failed.last().unwrap()["00000902"]["Value"][0].as_str().unwrap();
    assert!(last.contains("after 10000 not read"), "{last}");
    assert_eq!(v["00081199"]["Value"].as_array().unwrap().len(), 1);
    hub.stop().await;
}

/// A small tmpfs for a data directory, so the disk can really fill up; unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }

    /// Fill what is left with a file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// C-STORE one synthetic instance: its status, or why there was no association.
async fn try_store_one(port: u16, study: &str, sop: &str) -> Result<u16, String> {
    let data = synthetic_sc(None, b"Disk^Full", "DF1", study, sop);
    let sop = sop.to_string();
    tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).map_err(|e| e.to_string())?;
        let r = a.store(SC, &sop, &data).map_err(|e| e.to_string())?;
        a.release();
        Ok(r.status)
    })
    .await
    .unwrap()
}

/// C-STORE one synthetic instance; its status.
pub(crate) async fn store_one(port: u16, study: &str, sop: &str) -> u16 {
    try_store_one(port, study, sop).await.expect("association")
}

async fn login(http: &str) -> u16 {
    let r = reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&json!({ "username": READER.0, "password": READER.1 }))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

/// The disk under the data directory (database and objects) fills up: C-STORE answers
/// 0xA700 (out of resources) and a login 503 while it lasts, nothing is acknowledged that
/// is not kept, and once space is freed writes, logins and the queue work again without a
/// restart (a failed COMMIT used to leave a pooled connection "inside a transaction", and
/// every later write failed until the process was restarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_survived_without_a_restart() {
    let Some(disk) = SmallDisk::mount(24) else {
        assert!(std::env::var_os("CI").is_none(), "a tmpfs could not be mounted (the test command runs as root), and CI must run every test");
        eprintln!("skipped: a tmpfs could not be mounted (not root)");
        return;
    };
    set_up(&disk.0);
    let hub = serve(&disk.0, &[]).await;
    let study = "1.2.826.0.1.3680043.8.498.75004";
    assert_eq!(store_one(hub.dimse_port, study, &format!("{study}.1")).await, 0, "stored while there is space");
    assert_eq!(login(&hub.http).await, 200);
    let filler = disk.fill();
    let full = store_one(hub.dimse_port, study, &format!("{study}.2")).await;
    assert_eq!(full, 0xA700, "out of resources while the disk is full");
    let during = login(&hub.http).await;
    assert_eq!(during, 503, "a login needs a write: unavailable, not an internal error");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(store_one(hub.dimse_port, study, &format!("{study}.2")).await, 0, "stored once space is back");
    assert_eq!(login(&hub.http).await, 200, "logins work again without a restart");
    hub.until_state(READER, study, "ready", Duration::from_secs(30)).await;
    let (ok, out) = echo(hub.dimse_port, "TOWNSHIP1").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.kill9().await;
}

/// A hub on a fresh PostgreSQL database reached through a [`DbLink`], with site
/// Township-1 (AE TOWNSHIP1).
pub(crate) async fn hub_behind_a_db_link() -> (Hub, DbLink) {
    let url = common::pg_database().await.unwrap();
    let mut proxied = url::Url::parse(&url).unwrap();
    let target = format!("{}:{}", proxied.host_str().unwrap(), proxied.port().unwrap_or(5432));
    let link = DbLink::to(target).await;
    proxied.set_port(Some(link.addr.port())).unwrap();
    let hub = Hub::start_with(Backend::Sqlite, |c| c.database_url = Some(proxied.to_string())).await;
    hub.site("Township-1", &["TOWNSHIP1"], None).await;
    (hub, link)
}

/// A TCP proxy in front of PostgreSQL that the test can take down (every connection cut,
/// new ones refused) and bring back, as a database restart or a broken link would.
pub(crate) struct DbLink {
    pub(crate) addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl DbLink {
    pub(crate) async fn to(target: String) -> DbLink {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let is_up = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                cuts.borrow_and_update(); // only cuts from now on end this connection
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        DbLink { addr, up, cut }
    }

    pub(crate) fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub(crate) fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// PostgreSQL goes away (every connection cut, new ones refused) and comes back: while it
/// is away C-STORE answers 0xA700 and a login 503, and afterwards writes, logins and the
/// queue work again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_going_away_is_survived() {
    if !common::peer_present("READHUB_TEST_PG_URL", "PostgreSQL") {
        return;
    }
    let (hub, link) = hub_behind_a_db_link().await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let http = hub.base.trim_start_matches("http://").to_string();
    let login_as = |who: (String, String)| {
        let http = http.clone();
        async move {
            let r = reqwest::Client::new().post(format!("http://{http}/api/login")).json(&json!({ "username": who.0, "password": who.1 })).send().await.unwrap();
            r.status().as_u16()
        }
    };
    let study = "1.2.826.0.1.3680043.8.498.75005";
    assert_eq!(store_one(hub.dimse_port, study, &format!("{study}.1")).await, 0);
    assert_eq!(login_as(reader.clone()).await, 200);

    link.down();
    let started = std::time::Instant::now();
    let refused = try_store_one(hub.dimse_port, study, &format!("{study}.2")).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("reject")), "A-ASSOCIATE-RJ while the database is away: {refused:?}");
    assert!(started.elapsed() < Duration::from_secs(25), "within a modality's ACSE timeout: {:?}", started.elapsed());
    assert_eq!(login_as(reader.clone()).await, 503, "unavailable, not an internal error or a wrong password");

    link.up();
    // a modality retries after a transient rejection; the hub must take it within seconds
    let back = std::time::Instant::now();
    loop {
        match try_store_one(hub.dimse_port, study, &format!("{study}.2")).await {
            Ok(status) => {
                assert_eq!(status, 0, "stored once the database is back");
                break;
            }
            Err(e) => assert!(back.elapsed() < Duration::from_secs(30), "still refused 30 s after the database came back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("the first C-STORE after the database came back succeeded after {:?}", back.elapsed());
    assert_eq!(login_as(reader.clone()).await, 200, "logins work again without a restart");
    let id = wait_ready(&hub, &reader, study, None).await;
    let item = hub.get_json(&reader, &format!("/api/worklist/{id}")).await;
    assert_eq!(item["item"]["study_instance_uid"], study);
    hub.stop().await;
}

/// Each attack of issue 11, sent for real to one `readhub serve` with its default limits,
/// one after another; then C-ECHO and QIDO must each answer within a second, and the peak
/// RSS stays under 512 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_attack_then_the_hub_still_answers() {
    use super::ingest::{encapsulated_sc_with_table, nested_sc, sc_with_pixels};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    cli(dir.path(), &["user", "add", "tech1", "--role", "technician", "--site", "Township-1", "--password-stdin"], Some("technician-pw\n"));
    let hub = serve(dir.path(), &[]).await;
    let (port, http) = (hub.dimse_port, hub.http.clone());
    let client = reqwest::Client::new();
    let study = "1.2.826.0.1.3680043.8.498.77001";
    let sop = |n: u32| format!("{study}.{n}");

    // 1. data sets: nested 1,300 levels, native pixel data 10 bytes for 4×4 and 10 KB
    //    declaring 4 GB, encapsulated with a Basic Offset Table pointing outside; C-STORE
    let attacks: Vec<(String, Vec<u8>)> = vec![
        (sop(1), nested_sc(study, &sop(1), 1300)),
        (sop(2), sc_with_pixels(study, &sop(2), 4, 4, &[7; 10])),
        (sop(3), sc_with_pixels(study, &sop(3), 65535, 65535, &[7; 10_000])),
        (sop(5), sc_with_pixels(study, &sop(5), 4, 4, &[7; 16])),
    ];
    let statuses = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let s: Vec<u16> = attacks.iter().map(|(sop, d)| a.store(SC, sop, d).unwrap().status).collect();
        a.release();
        s
    })
    .await
    .unwrap();
    assert_eq!(statuses, vec![0xC000, 0xC000, 0xC000, 0], "refused, refused, refused, and one good film stored");
    // …and STOW-RS
    let parts = [
        ("application/dicom", common::part10(SC, &sop(6), &nested_sc(study, &sop(6), 1300))),
        ("application/dicom", encapsulated_sc_with_table(study, &sop(7), 2, 2, &[0, 1_000_000])),
    ];
    let (ct, body) = multipart(&parts);
    let r = client.post(format!("http://{http}/dicom-web/studies")).basic_auth("tech1", Some("technician-pw")).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(r.status(), 409, "both parts refused");

    // 2. a frame list naming frame 1 thirty thousand times
    let frames = vec!["1"; 30_000].join(",");
    let r = client
        .get(format!("http://{http}/dicom-web/studies/{study}/series/{study}.1/instances/{}/frames/{frames}", sop(5)))
        .basic_auth(READER.0, Some(READER.1))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status().is_client_error(), "{}", r.status());

    // 3. DIMSE command fragments that never end, and a command set nested 2,000 deep
    let cut = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).unwrap();
        let (pc, _) = a.context(SC).unwrap();
        for _ in 0..8 {
            if a.send_command_fragment(pc, vec![0u8; 16 * 1024], false).is_err() {
                break;
            }
        }
        a.receive_fails()
    })
    .await
    .unwrap();
    assert!(cut, "endless command fragments end the association");

    // 4. 640 silent TCP connections on the DICOM port, 50 HTTP requests whose headers never end
    let mut silent = Vec::new();
    for _ in 0..640 {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&http).await.unwrap();
        s.write_all(b"GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let started = std::time::Instant::now();
    let (ok, out) = echo(port, "TOWNSHIP1").await;
    assert!(ok, "a C-ECHO beside 640 silent connections: {out}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once, not behind them: {:?}", started.elapsed());
    // the slow HTTP requests are ended by the header timeout
    for s in &mut slow {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await.expect("the hub ends a request whose headers never end");
        let _ = n;
    }
    drop(silent);

    // then: C-ECHO and QIDO each within a second, and memory stayed bounded
    let started = std::time::Instant::now();
    let (ok, out) = echo(port, "TOWNSHIP1").await;
    assert!(ok, "C-ECHO after every attack: {out}");
    assert!(started.elapsed() < Duration::from_secs(1), "C-ECHO took {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let q = client.get(format!("http://{http}/dicom-web/studies?StudyInstanceUID={study}")).basic_auth(READER.0, Some(READER.1)).send().await.unwrap();
    assert_eq!(q.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1), "QIDO took {:?}", started.elapsed());
    let found: Vec<Value> = q.json().await.unwrap();
    assert_eq!(found[0]["00201208"]["Value"][0], 1, "only the good film is stored: {found:?}");
    let peak = peak_rss_mib(hub.child.id().unwrap());
    eprintln!("peak RSS after every attack: {peak} MiB");
    assert!(peak < 512, "peak RSS {peak} MiB (bound 512 MiB)");
    hub.kill9().await;
}

/// 64 concurrent requests with HTTP Basic credentials (wrong ones, as a credential-stuffing
/// flood would send, one name each) each need an argon2id check that allocates 19 MiB: they run on two
/// password-check threads, so peak RSS grows by a bounded amount (on tokio's blocking pool
/// every check took a thread of its own: 32 such requests took the process from 36 to
/// 540 MiB, 64 would take 1.2 GB), and every one is answered 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_password_checks_has_a_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let hub = serve(dir.path(), &[]).await;
    let before = peak_rss_mib(hub.child.id().unwrap());
    let client = reqwest::Client::new();
    let guesses = (0..64).map(|n| {
        let (client, url) = (client.clone(), format!("http://{}/api/worklist", hub.http));
        // a name each (one name would be locked after five): every request costs a check
        tokio::spawn(async move { client.get(url).basic_auth(format!("guess{n}"), Some("guess")).send().await.unwrap().status().as_u16() })
    });
    for g in futures::future::join_all(guesses).await {
        assert_eq!(g.unwrap(), 401);
    }
    let peak = peak_rss_mib(hub.child.id().unwrap());
    eprintln!("peak RSS {before} MiB before, {peak} MiB after 64 concurrent password checks");
    assert!(peak < before + 256, "64 concurrent password checks took peak RSS from {before} to {peak} MiB");
    assert_eq!(login(&hub.http).await, 200, "the right password still works");
    hub.kill9().await;
}

/// What a request names cannot make the hub hold more than the film: an 8192×8192
/// viewport on a 4×4 film renders 4×4 (the client scales up, the server never does), and a
/// bulk data tag with a multi-byte character is a 400, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewport_never_enlarges_and_a_bad_tag_is_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let study = "1.2.826.0.1.3680043.8.498.75006";
    let sop = format!("{study}.1");
    send_sc(&hub, "MODA", "VP1", study, &sop).await;
    let path = format!("/dicom-web/studies/{study}/series/{study}.1/instances/{sop}");
    let r = hub.get(&admin, &format!("{path}/rendered?accept=image/png&viewport=8192,8192")).await;
    assert_eq!(r.status(), 200);
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (4, 4), "not enlarged");
    let r = hub.get(&admin, &format!("{path}/rendered?accept=image/png&viewport=2,2")).await;
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (2, 2), "made smaller");
    let r = hub.get(&admin, &format!("{path}/bulkdata/00%EF%BF%BDUID")).await;
    assert_eq!(r.status(), 400);
    let r = hub.get(&admin, &format!("/dicom-web/studies?includefield=00%EF%BF%BDUID")).await;
    assert_eq!(r.status(), 400);
    let (ok, out) = echo(hub.dimse_port, "MODA").await;
    assert!(ok, "C-ECHO afterwards: {out}");
    hub.stop().await;
}
