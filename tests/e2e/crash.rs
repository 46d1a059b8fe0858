//! Crash durability, proven again and again: the real binary is killed (SIGKILL) at a
//! random instant while two modalities push over C-STORE and a technician over STOW-RS,
//! then started again on the same data. Every instance that was acknowledged (C-STORE
//! success, or listed as stored in a STOW-RS response) must be retrievable byte for byte,
//! every instance that was in flight must be either absent or whole, never half, and
//! every study with an acknowledged instance must reach the readers' queue.
//!
//! `READHUB_CRASH_ROUNDS` rounds (3 in the ordinary test run; `scripts/crash.sh` runs 100
//! and prints the figures for BENCHMARKS.md).

use super::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::served::{cli, serve};

const TECH: (&str, &str) = ("tech1", "technician-pw");
const READER: (&str, &str) = ("rad1", "radiologist-pw");

/// A tiny xorshift: the instants and sizes vary per round without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A secondary capture data set of `rows` × 256 16-bit pixels of noise (so no two are
/// alike), in its own study per sender and round.
fn instance(study: &str, sop: &str, rows: u16, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let pixels: Vec<u8> = (0..usize::from(rows) * 256).flat_map(|_| ((rng.next() % 4096) as u16).to_le_bytes()).collect();
    common::mono16_image(study, sop, b"OT", (b"Crash^Round", "CRASH1"), rows, 256, &pixels)
}

/// What the senders know: acknowledged instances, and those sent without an answer.
#[derive(Default)]
struct Ledger {
    /// SOP Instance UID → (study, data set bytes)
    acknowledged: HashMap<String, (String, Vec<u8>)>,
    in_flight: HashMap<String, (String, Vec<u8>)>,
}

type Shared = Arc<Mutex<Ledger>>;

/// One modality: C-STORE instances one after another on one association until cut off.
fn modality(port: u16, round: u32, sender: u32, ledger: Shared, seed: u64) {
    let mut rng = Rng(seed);
    let Ok(mut a) = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]) else { return };
    let study = format!("1.2.826.0.1.3680043.8.498.76.{round}.{sender}");
    for n in 1.. {
        let sop = format!("{study}.1.{n}");
        let data = instance(&study, &sop, 64 + rng.below(1024) as u16, rng.next());
        ledger.lock().unwrap().in_flight.insert(sop.clone(), (study.clone(), data.clone()));
        match a.store(SC, &sop, &data) {
            Ok(r) if r.status == 0 => {
                let mut l = ledger.lock().unwrap();
                let entry = l.in_flight.remove(&sop).unwrap();
                l.acknowledged.insert(sop, entry);
            }
            _ => return, // the hub is gone: this one stays "in flight"
        }
    }
}

/// The technician: STOW-RS requests of three instances until cut off.
async fn technician(http: String, round: u32, ledger: Shared, seed: u64) {
    let mut rng = Rng(seed);
    let client = reqwest::Client::new();
    let study = format!("1.2.826.0.1.3680043.8.498.76.{round}.9");
    for batch in 1.. {
        let mut parts = Vec::new();
        for k in 1..=3 {
            let sop = format!("{study}.1.{batch}.{k}");
            let data = instance(&study, &sop, 64 + rng.below(512) as u16, rng.next());
            ledger.lock().unwrap().in_flight.insert(sop.clone(), (study.clone(), data.clone()));
            parts.push(("application/dicom", common::part10(SC, &sop, &data)));
        }
        let (ct, body) = multipart(&parts);
        let sent = client
            .post(format!("http://{http}/dicom-web/studies"))
            .basic_auth(TECH.0, Some(TECH.1))
            .header("content-type", ct)
            .body(body)
            .send()
            .await;
        let Ok(r) = sent else { return };
        if r.status() != 200 {
            return;
        }
        let Ok(v) = r.json::<Value>().await else { return };
        let mut l = ledger.lock().unwrap();
        for stored in v["00081199"]["Value"].as_array().into_iter().flatten() {
            let sop = stored["00081155"]["Value"][0].as_str().unwrap().to_string();
            if let Some(entry) = l.in_flight.remove(&sop) {
                l.acknowledged.insert(sop, entry);
            }
        }
    }
}

/// Every instance of `study` the hub shows, with its bytes.
async fn retrieve_study(http: &str, study: &str) -> HashMap<String, Vec<u8>> {
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{http}/dicom-web/studies/{study}/instances"))
        .basic_auth(READER.0, Some(READER.1))
        .send()
        .await
        .unwrap();
    let listed: Vec<Value> = if r.status() == 200 { r.json().await.unwrap() } else { Vec::new() };
    let mut out = HashMap::new();
    for inst in listed {
        let sop = inst["00080018"]["Value"][0].as_str().unwrap().to_string();
        let series = inst["0020000E"]["Value"][0].as_str().unwrap();
        let r = client
            .get(format!("http://{http}/dicom-web/studies/{study}/series/{series}/instances/{sop}"))
            .header("accept", "application/dicom; transfer-syntax=*")
            .basic_auth(READER.0, Some(READER.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a listed instance is retrievable: {sop}");
        out.insert(sop, strip_meta(&r.bytes().await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_instants_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("READHUB_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    cli(dir.path(), &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
    cli(dir.path(), &["user", "add", "tech1", "--role", "technician", "--site", "Township-1", "--password-stdin"], Some("technician-pw\n"));
    let seed0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng(seed0 | 1);
    let (mut total_acked, mut total_in_flight_whole, mut total_in_flight_absent) = (0usize, 0usize, 0usize);
    let mut restart_ms = Vec::new();
    for round in 1..=rounds {
        let hub = serve(dir.path(), &[]).await;
        let ledger: Shared = Arc::default();
        let mut senders = Vec::new();
        for sender in 1..=2 {
            let (port, ledger, seed) = (hub.dimse_port, ledger.clone(), rng.next());
            senders.push(tokio::task::spawn_blocking(move || modality(port, round, sender, ledger, seed)));
        }
        let stow = tokio::spawn(technician(hub.http.clone(), round, ledger.clone(), rng.next()));
        // kill at a random instant while they push
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1800))).await;
        hub.kill9().await;
        for s in senders {
            s.await.unwrap();
        }
        stow.await.unwrap();

        let started = Instant::now();
        let hub = serve(dir.path(), &[]).await;
        restart_ms.push(started.elapsed().as_millis());
        let l = std::mem::take(&mut *ledger.lock().unwrap());
        let (shown, whole, absent) = check_round(round, &hub.http, &l).await;
        total_in_flight_whole += whole;
        total_in_flight_absent += absent;
        // and the worklist has every study with an acknowledged instance (the durable
        // hand-over of issue 10): ready after the quiet period, not lost with the process
        let acked_studies: std::collections::BTreeSet<&String> = l.acknowledged.values().map(|(s, _)| s).collect();
        for study in acked_studies {
            hub.until_state(READER, study, "ready", Duration::from_secs(60)).await;
        }
        total_acked += l.acknowledged.len();
        eprintln!(
            "round {round}: {} acknowledged, all retrieved byte for byte; {} in flight at the kill ({} whole, rest absent); restart {} ms",
            l.acknowledged.len(),
            l.in_flight.len(),
            l.in_flight.keys().filter(|s| shown.contains_key(*s)).count(),
            restart_ms.last().unwrap()
        );
        hub.kill9().await;
    }
    restart_ms.sort();
    eprintln!(
        "crash rounds: {rounds}; acknowledged instances: {total_acked}, lost: 0, corrupt: 0; in flight at the kill: {} (whole {total_in_flight_whole}, absent {total_in_flight_absent}, half-written 0); restart p50 {} ms, max {} ms",
        total_in_flight_whole + total_in_flight_absent,
        restart_ms[restart_ms.len() / 2],
        restart_ms.last().unwrap()
    );
    assert!(total_acked > 0, "the senders got acknowledgements before the kills");
}

/// What the hub shows after a kill, checked against the senders' ledger: every acknowledged
/// instance byte for byte, every in-flight one whole or absent, nothing never sent. Returns
/// what it shows and how many in-flight instances were whole and absent.
async fn check_round(round: u32, http: &str, l: &Ledger) -> (HashMap<String, Vec<u8>>, usize, usize) {
    let studies: std::collections::BTreeSet<String> = l.acknowledged.values().chain(l.in_flight.values()).map(|(s, _)| s.clone()).collect();
    let mut shown = HashMap::new();
    for study in &studies {
        shown.extend(retrieve_study(http, study).await);
    }
    for (sop, (_, sent)) in &l.acknowledged {
        let got = shown.get(sop).unwrap_or_else(|| panic!("round {round}: acknowledged instance {sop} is lost"));
        assert!(got == sent, "round {round}: acknowledged instance {sop} differs from what was sent ({} vs {} bytes)", got.len(), sent.len());
    }
    let (mut whole, mut absent) = (0, 0);
    for (sop, (_, sent)) in &l.in_flight {
        match shown.get(sop) {
            Some(got) => {
                assert!(got == sent, "round {round}: in-flight instance {sop} is visible half-written ({} of {} bytes)", got.len(), sent.len());
                whole += 1;
            }
            None => absent += 1,
        }
    }
    for sop in shown.keys() {
        assert!(l.acknowledged.contains_key(sop) || l.in_flight.contains_key(sop), "round {round}: {sop} was never sent");
    }
    (shown, whole, absent)
}

/// The complete files in a receive buffer (staging files left out).
fn buffered(dir: &std::path::Path) -> usize {
    walkdir(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).count()
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// In front of S3 an instance is acknowledged from the node's receive buffer: a node killed
/// while the store cannot be reached (here: its endpoint refuses connections) holds every
/// acknowledged instance on its disk only. Started again with the store back, it uploads
/// them; then a node with no buffer of its own, on another data directory, retrieves every
/// acknowledged instance byte for byte from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_s3_killed_with_instances_only_in_its_receive_buffer_loses_nothing() {
    if !common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster") || !common::peer_present("READHUB_TEST_S3_URL", "the Garage S3 node") {
        return;
    }
    let db = common::pg_database().await.unwrap();
    let s3 = common::s3_url();
    let mut unreachable = url::Url::parse(&s3).unwrap();
    unreachable.set_query(Some("endpoint=http://127.0.0.1:9"));
    let unreachable = unreachable.to_string();
    let dir = tempfile::tempdir().unwrap();
    let cli_db = |args: &[&str], stdin: Option<&str>| {
        let (ok, out) = super::readhub_cli(dir.path(), Some(&db), args, stdin);
        assert!(ok, "readhub {args:?}: {out}");
    };
    cli_db(&["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    cli_db(&["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
    cli_db(&["user", "add", "tech1", "--role", "technician", "--site", "Township-1", "--password-stdin"], Some("technician-pw\n"));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng(seed | 1);

    let hub = serve(dir.path(), &[("READHUB_DATABASE_URL", &db), ("READHUB_OBJECT_STORE_URL", &unreachable)]).await;
    let ledger: Shared = Arc::default();
    let mut senders = Vec::new();
    for sender in 1..=2 {
        let (port, ledger, seed) = (hub.dimse_port, ledger.clone(), rng.next());
        senders.push(tokio::task::spawn_blocking(move || modality(port, 1, sender, ledger, seed)));
    }
    let stow = tokio::spawn(technician(hub.http.clone(), 1, ledger.clone(), rng.next()));
    tokio::time::sleep(Duration::from_millis(1500 + rng.below(1000))).await;
    hub.kill9().await;
    for s in senders {
        s.await.unwrap();
    }
    stow.await.unwrap();
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(!l.acknowledged.is_empty(), "acknowledged while the store could not be reached");
    let buffer = dir.path().join("receive-buffer");
    let held = buffered(&buffer);
    assert!(held >= l.acknowledged.len(), "every acknowledged instance is in the buffer: {held} files, {} acknowledged", l.acknowledged.len());

    // another node, no buffer of its own: an acknowledged instance still on the dead node's
    // disk is "not there yet, try again" (503), never "not found"
    let other = tempfile::tempdir().unwrap();
    let reader = serve(other.path(), &[("READHUB_DATABASE_URL", &db), ("READHUB_OBJECT_STORE_URL", &s3), ("READHUB_RECEIVE_BUFFER", "off")]).await;
    let (sop, (study, _)) = l.acknowledged.iter().next().unwrap();
    let listed: Vec<Value> = reqwest::Client::new()
        .get(format!("http://{}/dicom-web/studies/{study}/instances", reader.http))
        .basic_auth(READER.0, Some(READER.1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let series = listed.iter().find(|i| i["00080018"]["Value"][0] == sop.as_str()).expect("indexed")["0020000E"]["Value"][0].as_str().unwrap().to_string();
    let r = reqwest::Client::new()
        .get(format!("http://{}/dicom-web/studies/{study}/series/{series}/instances/{sop}", reader.http))
        .header("accept", "application/dicom; transfer-syntax=*")
        .basic_auth(READER.0, Some(READER.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "an instance in a dead node's buffer is unavailable for now, not missing");
    let body = r.text().await.unwrap();
    assert!(body.contains("receive buffer"), "says why: {body}");

    // the store is back: the node uploads what its buffer holds
    let hub = serve(dir.path(), &[("READHUB_DATABASE_URL", &db), ("READHUB_OBJECT_STORE_URL", &s3)]).await;
    let started = Instant::now();
    while buffered(&buffer) > 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "the buffer was not emptied: {} files left", buffered(&buffer));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{held} buffered instances uploaded in {:?} after the restart", started.elapsed());
    hub.kill9().await;

    // the node with no buffer: everything acknowledged is in the shared store now
    let hub = reader;
    let (_, whole, absent) = check_round(1, &hub.http, &l).await;
    eprintln!("{} acknowledged, all retrieved from S3 byte for byte; in flight at the kill: {whole} whole, {absent} absent", l.acknowledged.len());
    let acked_studies: std::collections::BTreeSet<&String> = l.acknowledged.values().map(|(s, _)| s).collect();
    for study in acked_studies {
        hub.until_state(READER, study, "ready", Duration::from_secs(60)).await;
    }
    hub.kill9().await;
}
