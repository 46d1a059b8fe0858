//! End-to-end: the real readhub (in-process, ephemeral ports) driven by real peers (DCMTK,
//! pynetdicom, a dicom-ul SCU sending exact bytes) and a real HTTP client.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::scu;
use common::{data, dataset_bytes, strip_meta, synthetic_sc, Backend, Hub, EXPLICIT_LE, SC};
use reqwest::Method;
use serde_json::{json, Value};
use storage::query::StudyFilter;
use worklist::{Clock, Role};

/// `async fn NAME(Backend)` → tests `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if !super::common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster") {
                    return;
                }
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

/// `async fn NAME(Backend)` → tests `on_s3::NAME::postgres_s3` and `…::postgres_s3_unbuffered`:
/// the story again with the instances in a real S3-compatible store (Garage) and the index in
/// PostgreSQL, acknowledged from the receive buffer (the default) and after the upload.
macro_rules! on_s3 {
    ($($name:ident),* $(,)?) => {
        mod on_s3 {$(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres_s3() {
                    if !super::super::common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster")
                        || !super::super::common::peer_present("READHUB_TEST_S3_URL", "the Garage S3 node")
                    {
                        return;
                    }
                    super::super::$name(super::super::Backend::S3).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres_s3_unbuffered() {
                    if !super::super::common::peer_present("READHUB_TEST_PG_URL", "the PostgreSQL cluster")
                        || !super::super::common::peer_present("READHUB_TEST_S3_URL", "the Garage S3 node")
                    {
                        return;
                    }
                    super::super::$name(super::super::Backend::S3Unbuffered).await
                }
            }
        )*}
    };
}

mod accounts;
mod archive;
mod audit;
mod authz;
mod bounds;
mod cluster;
mod cli;
mod crash;
mod dicomweb;
mod ecg;
mod handover;
mod http;
mod ingest;
mod ops;
mod orders;
mod query_retrieve;
mod reports;
mod results;
mod served;
mod tls;
mod web_viewer;
mod reading;

fn sop_of(path: &std::path::Path) -> (String, String, String, String) {
    let obj = dicom_object::open_file(path).unwrap();
    let s = |t| {
        obj.element_opt(t).ok().flatten().map(|e| e.to_str().unwrap().trim_end_matches('\0').trim().to_string()).unwrap_or_default()
    };
    use dicom_dictionary_std::tags;
    (s(tags::STUDY_INSTANCE_UID), s(tags::SERIES_INSTANCE_UID), s(tags::SOP_INSTANCE_UID), s(tags::PATIENT_ID))
}

fn gbk(s: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(s).0.into_owned()
}

/// Instance files in the object store, whole or partial (`….dcm#0`), not the pictures and
/// JPEG-LS frames kept beside them (`….dcm.1024x1024.jpg`, `….dcm.frame1.jls`).
fn object_files(dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), n)
            } else if name.ends_with(".dcm") || name.contains(".dcm#") {
                *n += 1
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("objects"), &mut n);
    n
}

/// A minimal data set of any SOP class (test data), with optional extra elements.
fn synthetic(sop_class: &str, modality: &str, study: &str, sop: &str, extra: &[u8]) -> Vec<u8> {
    use common::elem;
    let mut d = Vec::new();
    d.extend(elem(0x0008, 0x0005, "CS", b"ISO_IR 192"));
    d.extend(elem(0x0008, 0x0016, "UI", sop_class.as_bytes()));
    d.extend(elem(0x0008, 0x0018, "UI", sop.as_bytes()));
    d.extend(elem(0x0008, 0x0060, "CS", modality.as_bytes()));
    d.extend(elem(0x0010, 0x0010, "PN", "Test^Patient".as_bytes()));
    d.extend(elem(0x0010, 0x0020, "LO", b"SYN1"));
    d.extend(elem(0x0020, 0x000D, "UI", study.as_bytes()));
    d.extend(elem(0x0020, 0x000E, "UI", format!("{study}.1").as_bytes()));
    d.extend_from_slice(extra);
    d
}

/// A `multipart/related; type="application/dicom"` body.
fn multipart(parts: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "readhub-test-7d3f9a";
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"), body)
}

/// STOW-RS `parts` as `who`: (HTTP status, the response's DICOM JSON).
async fn stow(hub: &Hub, who: &(String, String), parts: &[(&str, Vec<u8>)]) -> (u16, Value) {
    let (ct, body) = multipart(parts);
    let r = hub
        .http()
        .post(format!("{}/dicom-web/studies", hub.base))
        .basic_auth(&who.0, Some(&who.1))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Send one synthetic secondary capture of `study` (a new SOP Instance UID each call).
async fn send_sc(hub: &Hub, calling: &str, patient_id: &str, study: &str, sop: &str) {
    send_sc_acc(hub, calling, patient_id, study, sop, None).await
}

async fn send_sc_acc(hub: &Hub, calling: &str, patient_id: &str, study: &str, sop: &str, accession: Option<&str>) {
    let ds = common::synthetic_sc_with_accession(None, b"Retake^Test", patient_id, study, sop, accession);
    let (port, calling, sop) = (hub.dimse_port, calling.to_string(), sop.to_string());
    let r = tokio::task::spawn_blocking(move || {
        let mut a = scu::connect(port, &calling, &[(SC, &[EXPLICIT_LE])]).unwrap();
        let r = a.store(SC, &sop, &ds).unwrap();
        a.release();
        r
    })
    .await
    .unwrap();
    assert_eq!(r.status, 0);
}

const MIN: Duration = Duration::from_secs(60);

/// A senior reader's qualifications, supervising the pool or not.
fn senior_quals(supervisor: bool) -> worklist::directory::ReaderQualifications {
    worklist::directory::ReaderQualifications { seniority: worklist::Seniority::Senior, supervisor, ..Default::default() }
}

/// Claim and bring an item to the given reader; returns its id. The study is one synthetic
/// SC sent by `calling`.
async fn ready_item(hub: &Hub, calling: &str, reader: &(String, String), patient: &str, study: &str) -> i64 {
    send_sc(hub, calling, patient, study, &format!("{study}.1")).await;
    wait_ready(hub, reader, study, None).await
}

/// Wait until `study` is ready in the reader's queue (moving a manual clock past the quiet
/// period meanwhile); its item id.
async fn wait_ready(hub: &Hub, reader: &(String, String), study: &str, clock: Option<&worklist::ManualClock>) -> i64 {
    for _ in 0..150 {
        if let Some(c) = clock {
            c.advance(Duration::from_secs(2));
        }
        let q = hub.queue(reader).await;
        if let Some(i) = q.iter().find(|i| i["study_instance_uid"] == study && i["state"] == "ready") {
            return i["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("study {study} never became ready");
}

/// Today's date in China (the hub's default local time), YYYY-MM-DD.
fn chrono_today() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive().to_string()
}

/// The claimants' item ids together: `n` items, each claimed exactly once.
async fn each_claimed_once(tasks: Vec<tokio::task::JoinHandle<Vec<i64>>>, n: usize) {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), n, "claims: {all:?}");
    assert_eq!(unique.len(), n, "an item was claimed twice: {all:?}");
}

/// The text (`pdftotext`), page geometry (`pdfinfo`) and fonts (`pdffonts`) of a PDF, from
/// poppler-utils: an independent reader of what the server wrote.
fn pdf_inspect(pdf: &[u8]) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).arg(&path).args(if tool == "pdftotext" { vec!["-"] } else { vec![] }).output();
        let out = out.unwrap_or_else(|e| panic!("{tool} (poppler-utils, installed by scripts/test.sh): {e}"));
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    (run("pdftotext", &["-enc", "UTF-8"]), run("pdfinfo", &[]), run("pdffonts", &[]))
}

fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run the readhub CLI on `dir` (and `database_url`, else the SQLite file in `dir`), with
/// `stdin` as its input: (succeeded, stdout and stderr).
fn readhub_cli(dir: &std::path::Path, database_url: Option<&str>, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_readhub"));
    c.args(args).env("READHUB_DATA_DIR", dir);
    match database_url {
        Some(url) => c.env("READHUB_DATABASE_URL", url),
        None => c.env_remove("READHUB_DATABASE_URL"),
    };
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// C-ECHO with DCMTK's echoscu (10 s timeout): whether it succeeded, and what it printed.
async fn echo(port: u16, calling: &str) -> (bool, String) {
    let out = tokio::process::Command::new("echoscu")
        .args(["-aet", calling, "-aec", "READHUB", "-to", "10", "127.0.0.1", &port.to_string()])
        .output()
        .await
        .expect("echoscu (DCMTK)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
