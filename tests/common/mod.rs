//! Test harness: a real readhub on ephemeral ports (in-process), a fresh database per test
//! (SQLite in a temp dir, or a new database in the PostgreSQL cluster the test setup
//! started, READHUB_TEST_PG_URL), and helpers to drive it with real peers.
#![allow(dead_code)]

pub mod scu;

use std::path::{Path, PathBuf};
use std::time::Duration;

use readhub::{Config, Listeners};
use serde_json::Value;
use storage::Storage;
use tempfile::TempDir;
use tokio::sync::oneshot;
use worklist::{Role, Worklist};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL for the index and a real S3-compatible store (Garage, started by the
    /// README's test command) for the instances: the scaled-out install, acknowledging
    /// from the node's receive buffer (the default in front of S3)
    S3,
    /// the same without a receive buffer: each acknowledgement waits for its upload
    S3Unbuffered,
}

impl Backend {
    pub fn on_postgres(self) -> bool {
        matches!(self, Backend::Postgres | Backend::S3 | Backend::S3Unbuffered)
    }

    pub fn on_s3(self) -> bool {
        matches!(self, Backend::S3 | Backend::S3Unbuffered)
    }
}

/// A prefix of its own in the test bucket (READHUB_TEST_S3_URL, `s3://BUCKET?endpoint=…`),
/// so tests sharing the bucket never see each other's objects.
pub fn s3_url() -> String {
    let base = std::env::var("READHUB_TEST_S3_URL").expect("READHUB_TEST_S3_URL (the README's test command starts Garage)");
    let mut url = url::Url::parse(&base).expect("READHUB_TEST_S3_URL is a URL");
    url.set_path(&format!("/t-{}", uuid::Uuid::new_v4().simple()));
    url.to_string()
}

pub fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel);
    assert!(p.exists(), "sample file {} is missing: shared/data must sit beside the repository", p.display());
    p
}

/// A fresh PostgreSQL database, or None when the test setup did not start a cluster.
pub async fn pg_database() -> Option<String> {
    let admin = std::env::var("READHUB_TEST_PG_URL").ok()?;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.expect("connect to READHUB_TEST_PG_URL");
    let name = format!("readhub_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    let mut url = url::Url::parse(&admin).expect("READHUB_TEST_PG_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

/// Is the peer a test needs present (its environment variable set by the README's test
/// command)? Outside CI a missing peer skips the test, saying so; when `CI` is set it fails
/// it: CI never passes a test it did not run.
pub fn peer_present(var: &str, what: &str) -> bool {
    if std::env::var_os(var).is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: {var} is not set, and CI must run every test (run the README's test command)");
    }
    eprintln!("skipped: {var} is not set: {what} (the README's test command sets it)");
    false
}

pub struct Hub {
    pub dimse_port: u16,
    /// the HL7 (MLLP) listener's port, when the test set `hl7_addr`
    pub hl7_port: Option<u16>,
    pub base: String,
    pub config: Config,
    pub storage: Storage,
    pub worklist: Worklist,
    pub consortium: i64,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl Hub {
    pub async fn start(backend: Backend) -> Hub {
        Hub::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Hub {
        Hub::start_clocked(backend, std::sync::Arc::new(worklist::SystemClock), tweak).await
    }

    /// A hub whose worklist runs on `clock` (a `ManualClock` in SLA and lease tests).
    pub async fn start_clocked(backend: Backend, clock: std::sync::Arc<dyn worklist::Clock>, tweak: impl FnOnce(&mut Config)) -> Hub {
        // READHUB_TEST_LOG=info (with --nocapture) shows the servers' logs
        if let Ok(filter) = std::env::var("READHUB_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            dicom_addr: "127.0.0.1:0".into(),
            http_addr: "127.0.0.1:0".into(),
            quiet_period_secs: 1,
            ..Config::default()
        };
        if backend.on_postgres() {
            config.database_url = Some(pg_database().await.expect("READHUB_TEST_PG_URL"));
        }
        if backend.on_s3() {
            config.object_store_url = Some(s3_url());
        }
        if backend == Backend::S3Unbuffered {
            config.receive_buffer = Some("off".into());
        }
        tweak(&mut config);
        // migrate and create defaults before the server starts, and keep a handle for
        // the test's own set-up (sites, users)
        let (storage, worklist, consortium) = readhub::open_with_clock(&config, clock.clone()).await.expect("open storage");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let dimse_port = listeners.dimse.local_addr().unwrap().port();
        let hl7_port = listeners.hl7.as_ref().map(|l| l.local_addr().unwrap().port());
        let base = format!("http://{}", listeners.http.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(readhub::run_with_clock(
            config.clone(),
            listeners,
            async move {
                let _ = rx.await;
            },
            clock,
        ));
        // the sockets are bound already; wait until `run` has opened its storage and serves,
        // so a test that then breaks something breaks the running hub, not its start-up
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(format!("{base}/")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(!task.is_finished(), "readhub::run ended during start-up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Hub { dimse_port, hl7_port, base, config, storage, worklist, consortium, stop: Some(tx), task: Some(task), _dir: dir }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("readhub stops within 30 s")
                .expect("join")
                .expect("readhub::run returned an error");
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub async fn site(&self, name: &str, aes: &[&str], fallback: Option<&str>) -> storage::Site {
        let aes: Vec<String> = aes.iter().map(|s| s.to_string()).collect();
        storage::sites::add_site(&self.storage.db, name, self.consortium, &aes, fallback)
            .await
            .expect("add site")
    }

    /// Create a user; `scope` is a site name for technicians/referrers, a pool name for readers.
    pub async fn user(&self, name: &str, role: Role, scope: Option<&str>) -> (String, String) {
        let password = format!("{name}-secret-pw");
        let (site, pool) = match role {
            Role::Technician | Role::Referrer => {
                let s = storage::sites::site_by_name(&self.storage.db, scope.unwrap()).await.unwrap().unwrap();
                (Some(s.id), None)
            }
            Role::Reader => (None, Some(self.worklist.pool_by_name(scope.unwrap()).await.unwrap().id)),
            Role::Admin => (None, None),
        };
        self.worklist.add_user(name, name, role, site, pool, &password).await.expect("add user");
        (name.to_string(), password)
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn get(&self, who: &(String, String), path: &str) -> reqwest::Response {
        self.http()
            .get(format!("{}{}", self.base, path))
            .basic_auth(&who.0, Some(&who.1))
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_accept(&self, who: &(String, String), path: &str, accept: &str) -> reqwest::Response {
        self.http()
            .get(format!("{}{}", self.base, path))
            .basic_auth(&who.0, Some(&who.1))
            .header("accept", accept)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, who: &(String, String), path: &str) -> Value {
        let r = self.get(who, path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path} -> {status}: {text}");
        if text.is_empty() {
            Value::Array(vec![])
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
        }
    }

    pub async fn send(&self, who: &(String, String), method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rq = self.http().request(method, format!("{}{}", self.base, path)).basic_auth(&who.0, Some(&who.1));
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Run DCMTK storescu as a modality; returns (exit code, stderr+stdout).
    pub async fn storescu(&self, calling_ae: &str, extra: &[&str], files: &[PathBuf]) -> (i32, String) {
        let out = tokio::process::Command::new("storescu")
            .args(["-aet", calling_ae, "-aec", "READHUB"])
            .args(extra)
            .arg("127.0.0.1")
            .arg(self.dimse_port.to_string())
            .args(files)
            .output()
            .await
            .expect("storescu (DCMTK) must be installed: run the README's test command");
        (
            out.status.code().unwrap_or(-1),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// Wait until `check` holds, polling (the worklist promotes items on a 0.5 s tick).
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..100 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    /// Worklist items of a pool, as the given reader sees them.
    pub async fn queue(&self, reader: &(String, String)) -> Vec<Value> {
        self.get_json(reader, "/api/worklist").await.as_array().cloned().unwrap_or_default()
    }
}

/// The raw data set of a Part-10 file (everything after the file meta group).
pub fn dataset_bytes(file: &Path) -> (String, String, String, Vec<u8>) {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[128..132], b"DICM", "{} is not Part-10", file.display());
    let meta = dicom_object::meta::FileMetaTable::from_reader(&bytes[128..]).expect("file meta");
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let start = 144 + group_len;
    (
        meta.media_storage_sop_class_uid().trim_end_matches('\0').to_string(),
        meta.media_storage_sop_instance_uid().trim_end_matches('\0').to_string(),
        meta.transfer_syntax().trim_end_matches('\0').to_string(),
        bytes[start..].to_vec(),
    )
}

/// The data set part of a stored/retrieved Part-10 file.
pub fn strip_meta(file: &[u8]) -> Vec<u8> {
    assert_eq!(&file[128..132], b"DICM");
    let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
    file[144 + group_len..].to_vec()
}

/// Build an explicit VR little endian element (test data only).
pub fn elem(group: u16, element: u16, vr: &str, value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == "UI" { 0 } else { b' ' });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr.as_bytes());
    if matches!(vr, "OB" | "OW" | "SQ" | "UN" | "UT" | "UC" | "UR") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&v);
    out
}

pub const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A small secondary-capture data set with the given raw (already encoded) name bytes.
pub fn synthetic_sc(charset: Option<&[u8]>, name: &[u8], patient_id: &str, study: &str, sop: &str) -> Vec<u8> {
    synthetic_sc_with_accession(charset, name, patient_id, study, sop, None)
}

/// A Part-10 file (preamble, DICM, file meta group) around an explicit VR LE data set, for
/// peers such as storescu that send files.
pub fn part10(sop_class: &str, sop: &str, dataset: &[u8]) -> Vec<u8> {
    part10_in(EXPLICIT_LE, sop_class, sop, dataset)
}

/// [`part10`] for a data set in transfer syntax `ts`.
pub fn part10_in(ts: &str, sop_class: &str, sop: &str, dataset: &[u8]) -> Vec<u8> {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax(ts)
        .build()
        .expect("file meta");
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).expect("write file meta");
    out.extend_from_slice(dataset);
    out
}

/// [`synthetic_sc`] with an Accession Number.
pub fn synthetic_sc_with_accession(charset: Option<&[u8]>, name: &[u8], patient_id: &str, study: &str, sop: &str, accession: Option<&str>) -> Vec<u8> {
    let mut d = Vec::new();
    if let Some(cs) = charset {
        d.extend(elem(0x0008, 0x0005, "CS", cs));
    }
    d.extend(elem(0x0008, 0x0016, "UI", SC.as_bytes()));
    d.extend(elem(0x0008, 0x0018, "UI", sop.as_bytes()));
    d.extend(elem(0x0008, 0x0020, "DA", b"20261122"));
    if let Some(acc) = accession {
        d.extend(elem(0x0008, 0x0050, "SH", acc.as_bytes()));
    }
    d.extend(elem(0x0008, 0x0060, "CS", b"OT"));
    d.extend(elem(0x0010, 0x0010, "PN", name));
    d.extend(elem(0x0010, 0x0020, "LO", patient_id.as_bytes()));
    d.extend(elem(0x0020, 0x000D, "UI", study.as_bytes()));
    d.extend(elem(0x0020, 0x000E, "UI", format!("{study}.1").as_bytes()));
    d.extend(elem(0x0028, 0x0002, "US", &1u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0004, "CS", b"MONOCHROME2"));
    d.extend(elem(0x0028, 0x0010, "US", &4u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0011, "US", &4u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0100, "US", &8u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0101, "US", &8u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0102, "US", &7u16.to_le_bytes()));
    d.extend(elem(0x0028, 0x0103, "US", &0u16.to_le_bytes()));
    d.extend(elem(0x7FE0, 0x0010, "OB", &(0u8..16).collect::<Vec<_>>()));
    d
}

/// A secondary capture data set of `rows` × `columns` 16-bit monochrome pixels (12 stored),
/// in series `{study}.1`, with these modality, patient name and patient ID.
pub fn mono16_image(study: &str, sop: &str, modality: &[u8], patient: (&[u8], &str), rows: u16, columns: u16, pixels: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(elem(0x0008, 0x0016, "UI", SC.as_bytes()));
    d.extend(elem(0x0008, 0x0018, "UI", sop.as_bytes()));
    d.extend(elem(0x0008, 0x0060, "CS", modality));
    d.extend(elem(0x0010, 0x0010, "PN", patient.0));
    d.extend(elem(0x0010, 0x0020, "LO", patient.1.as_bytes()));
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
    d.extend(elem(0x7FE0, 0x0010, "OW", pixels));
    d
}

/// Python with pynetdicom and pydicom, from the test setup's venv.
pub fn python() -> String {
    std::env::var("READHUB_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        if venv.exists() { venv.display().to_string() } else { "python3".into() }
    })
}
