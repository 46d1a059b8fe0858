//! The hand-over from ingest to the worklist survives a crash: the real binary is killed
//! (SIGKILL) right after a C-STORE success whose hand-over was held back, and while an
//! association is still sending a study; after a restart each study is in the reader's
//! queue and ready after the quiet period, not after the stall horizon.

use super::*;

use std::path::Path;

use super::served::{cli, serve};

fn set_up(dir: &Path) {
    cli(dir, &["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    cli(dir, &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("radiologist-pw\n"));
}

const READER: (&str, &str) = ("rad1", "radiologist-pw");

/// Acknowledged, then killed before the worklist saw it: after the restart the study is in
/// the queue, and ready after the quiet period.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_then_killed_before_the_handover() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let file = data("pydicom-data/RG1_UNCR.dcm");
    let (study, ..) = sop_of(&file);

    // the hand-over is held back (fault injection): the instance is acknowledged and indexed,
    // the worklist has not seen it
    let hub = serve(dir.path(), &[("READHUB_TEST_HOLD_ARRIVALS", "true")]).await;
    store(&hub, &file).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hub.queue(READER).await.is_empty(), "the hand-over was held: no item yet");
    hub.kill9().await;

    let hub = serve(dir.path(), &[]).await;
    // a CR film has no quiet period: ready as soon as the restart ends the cut-off transfer,
    // nowhere near the stall horizon (600 s)
    hub.until_state(READER, &study, "ready", Duration::from_secs(30)).await;
    let q = hub.queue(READER).await;
    let item = q.iter().find(|i| i["study_instance_uid"] == study).unwrap();
    assert_eq!(item["num_instances"], 1);
    let events = events_of(&hub, &study).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["arrived", "routed", "ready"], "{events:?}");
    hub.kill9().await;
}

/// Killed while an association is still sending a study (the item is receiving): after the
/// restart the transfer cut off by the crash is ended, and the study is ready after the
/// quiet period instead of the stall horizon.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiving_when_killed_is_ready_after_the_quiet_period() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let study = "1.2.826.0.1.3680043.8.498.70001";
    let hub = serve(dir.path(), &[]).await;
    let port = hub.dimse_port;
    let data = synthetic_sc(None, b"Receiving^Killed", "PK1", study, "1.2.826.0.1.3680043.8.498.70001.1");
    // one instance sent, the association left open: the sender is still "sending"
    let scu = tokio::task::spawn_blocking(move || {
        let mut scu = scu::connect(port, "TOWNSHIP1", &[(SC, &[EXPLICIT_LE])]).expect("association");
        let r = scu.store(SC, "1.2.826.0.1.3680043.8.498.70001.1", &data).expect("C-STORE");
        assert_eq!(r.status, 0, "{r:?}");
        scu
    })
    .await
    .unwrap();
    hub.until_state(READER, study, "receiving", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = hub.queue(READER).await;
    assert!(
        q.iter().any(|i| i["study_instance_uid"] == study && i["state"] == "receiving"),
        "an open association keeps the study receiving past the quiet period: {q:?}"
    );
    hub.kill9().await;
    drop(scu);

    let hub = serve(dir.path(), &[]).await;
    let took = hub.until_state(READER, study, "ready", Duration::from_secs(60)).await;
    assert!(took < Duration::from_secs(60), "ready after the quiet period, not the 600 s stall horizon ({took:?})");
    hub.kill9().await;
}

/// Send `file` with DCMTK storescu as TOWNSHIP1; it must be acknowledged.
async fn store(hub: &super::served::Served, file: &Path) {
    let out = tokio::process::Command::new("storescu")
        .args(["-aet", "TOWNSHIP1", "-aec", "READHUB", "127.0.0.1", &hub.dimse_port.to_string()])
        .arg(file)
        .output()
        .await
        .expect("storescu (DCMTK)");
    assert!(out.status.success(), "C-STORE acknowledged: {}", String::from_utf8_lossy(&out.stderr));
}

/// The events of an item, oldest first: (kind, at ms).
async fn events_of(hub: &super::served::Served, study: &str) -> Vec<(String, i64)> {
    let q = hub.queue(READER).await;
    let item = q.iter().find(|i| i["study_instance_uid"] == study).expect("the study's item");
    let events: Vec<Value> = reqwest::Client::new()
        .get(format!("http://{}/api/worklist/{}/events", hub.http, item["id"]))
        .basic_auth(READER.0, Some(READER.1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    events.iter().map(|e| (e["kind"].as_str().unwrap().to_string(), e["at"].as_i64().unwrap())).collect()
}

/// With the default settings (the hub's quiet period 10 s) a CR film sent in one
/// association is ready within a second of that association's end: a film is one
/// association, and waiting after it only keeps the patient waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_association_film_is_ready_within_a_second_of_its_end() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let file = data("pydicom-data/RG1_UNCR.dcm");
    let (study, ..) = sop_of(&file);
    let hub = serve(dir.path(), &[("READHUB_QUIET_PERIOD_SECS", "10")]).await;
    store(&hub, &file).await;
    // storescu has released its association: the wall clock from here (generous for a busy
    // CI machine, and far below the 10 s quiet period) …
    let took = hub.until_state(READER, &study, "ready", Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(5), "ready {took:?} after the association's end, not after the quiet period");
    // … and the hub's own clock: ready less than a second after the film arrived
    let events = events_of(&hub, &study).await;
    let at = |k: &str| events.iter().find(|e| e.0 == k).unwrap_or_else(|| panic!("no {k} event: {events:?}")).1;
    assert!(at("ready") - at("arrived") < 1000, "{events:?}");
    hub.kill9().await;
}

/// A CT sent over two associations a few seconds apart is one item, and it is not ready
/// between them (a CT keeps the hub's quiet period); it is ready after the second ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ct_over_two_associations_is_one_item_not_ready_between_them() {
    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let study = "1.2.826.0.1.3680043.8.498.70002";
    let hub = serve(dir.path(), &[("READHUB_QUIET_PERIOD_SECS", "10")]).await;
    let port = hub.dimse_port;
    let send = |range: std::ops::Range<u32>| {
        tokio::task::spawn_blocking(move || {
            let mut scu = scu::connect(port, "TOWNSHIP1", &[(CT, &[EXPLICIT_LE])]).expect("association");
            for n in range {
                let sop = format!("{study}.1.{n}");
                let r = scu.store(CT, &sop, &synthetic(CT, "CT", study, &sop, &[])).expect("C-STORE");
                assert_eq!(r.status, 0, "{r:?}");
            }
            scu.release();
        })
    };
    send(0..5).await.unwrap();
    hub.until_state(READER, study, "receiving", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = hub.queue(READER).await;
    let mine: Vec<&Value> = q.iter().filter(|i| i["study_instance_uid"] == study).collect();
    assert!(mine.len() == 1 && mine[0]["state"] == "receiving", "4 s after the first association: {q:?}");
    send(5..10).await.unwrap();
    let q = hub.queue(READER).await;
    let mine: Vec<&Value> = q.iter().filter(|i| i["study_instance_uid"] == study).collect();
    assert!(mine.len() == 1 && mine[0]["state"] == "receiving", "right after the second: {q:?}");
    hub.until_state(READER, study, "ready", Duration::from_secs(60)).await;
    let q = hub.queue(READER).await;
    let mine: Vec<&Value> = q.iter().filter(|i| i["study_instance_uid"] == study).collect();
    assert_eq!(mine.len(), 1, "one item: {q:?}");
    assert_eq!(mine[0]["num_instances"], 10);
    let events = events_of(&hub, study).await;
    let at = |k: &str| events.iter().rev().find(|e| e.0 == k).unwrap().1;
    assert!(at("ready") - events[0].1 >= 10_000, "ready only after the quiet period: {events:?}");
    hub.kill9().await;
}

/// A sender that asks for Storage Commitment of what it sent, and gets every instance
/// committed, has declared its study complete: a CT (which waits out the 10 s quiet period
/// otherwise) is ready as soon as its association ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_commitment_ends_the_quiet_period() {
    let dir = tempfile::tempdir().unwrap();
    set_up(dir.path());
    let file = data("pydicom/test_files/CT_small.dcm");
    let (study, ..) = sop_of(&file);
    let hub = serve(dir.path(), &[("READHUB_QUIET_PERIOD_SECS", "10")]).await;
    let script = root().join("tests/peers/commitment_scu.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(common::python()).arg(&script).arg(hub.dimse_port.to_string()).arg("TOWNSHIP1").arg(&file).kill_on_drop(true).output(),
    )
    .await
    .expect("the pynetdicom modality hung")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["event_type"], 1, "everything committed: {r}");
    // released: ready well before the 10 s quiet period
    let took = hub.until_state(READER, &study, "ready", Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(5), "ready {took:?} after the association's end");
    let events = events_of(&hub, &study).await;
    let at = |k: &str| events.iter().find(|e| e.0 == k).unwrap_or_else(|| panic!("no {k}: {events:?}")).1;
    assert!(at("ready") - at("arrived") < 8_000, "no quiet period after the commitment: {events:?}");
    hub.kill9().await;
}
