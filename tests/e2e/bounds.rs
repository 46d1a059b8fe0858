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
    use common::elem;
    let mut d = Vec::new();
    d.extend(elem(0x0008, 0x0016, "UI", SC.as_bytes()));
    d.extend(elem(0x0008, 0x0018, "UI", sop.as_bytes()));
    d.extend(elem(0x0008, 0x0060, "CS", b"DX"));
    d.extend(elem(0x0010, 0x0010, "PN", b"Large^Film"));
    d.extend(elem(0x0010, 0x0020, "LO", b"BIG1"));
    d.extend(elem(0x0020, 0x000D, "UI", study.as_bytes()));
    d.extend(elem(0x0020, 0x000E, "UI", format!("{study}.1").as_bytes()));
    d.extend(elem(0x0028, 0x0002, "US", &1u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0004, "CS", b"MONOCHROME2"));
    d.extend(elem(0x0028, 0x0010, "US", &rows.to_le_bytes()));
    d.extend(elem(0x0028, 0x0011, "US", &columns.to_le_bytes()));
    d.extend(elem(0x0028, 0x0100, "US", &16u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0101, "US", &12u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0102, "US", &11u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0103, "US", &0u16.to_le_bytes()));
    let pixels: Vec<u8> = (0..u32::from(rows) * u32::from(columns)).flat_map(|i| ((i % 4096) as u16).to_le_bytes()).collect();
    d.extend(elem(0x7FE0, 0x0010, "OW", &pixels));
    d
}

/// The peak resident set of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kb / 1024
}

/// Sixteen concurrent full-size renders of a 2500×3000 16-bit film (each holds ~80 MiB
/// while it decodes; 8 of them took RSS to 720 MiB) queue behind the decoding budget: all
/// are answered, peak RSS stays under 512 MiB, and C-ECHO and QIDO answer afterwards.
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
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        })
    });
    for r in futures::future::join_all(renders).await {
        let (status, len) = r.unwrap();
        assert_eq!(status, 200);
        assert!(len > 1000, "a JPEG of {len} bytes");
    }
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
