//! `readhub serve` as a process of its own on ephemeral ports, for the tests that kill it,
//! stop it, or start it again on the same data.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::readhub_cli;

/// One `readhub serve` process on ephemeral ports.
pub struct Served {
    pub child: tokio::process::Child,
    pub http: String,
    pub dimse_port: u16,
    /// the DICOM TLS port, when `READHUB_DICOM_TLS_ADDR` was given
    pub dimse_tls_port: Option<u16>,
}

/// The readhub CLI on `dir` (site and user set-up).
pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) {
    let (ok, out) = readhub_cli(dir, None, args, stdin);
    assert!(ok, "readhub {args:?}: {out}");
}

/// Start `readhub serve` on `dir` and wait for the addresses it logs.
pub async fn serve(dir: &Path, env: &[(&str, &str)]) -> Served {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_readhub"));
    c.arg("serve")
        .env("READHUB_DATA_DIR", dir)
        .env_remove("READHUB_DATABASE_URL")
        .env("READHUB_DICOM_ADDR", "127.0.0.1:0")
        .env("READHUB_HTTP_ADDR", "127.0.0.1:0")
        .env("READHUB_QUIET_PERIOD_SECS", "2")
        .env("READHUB_STALL_HORIZON_SECS", "600")
        .env("READHUB_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let field = |line: &str, key: &str| line.split(key).nth(1).map(|r| r.split_whitespace().next().unwrap().to_string());
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        if line.contains("readhub listening") {
            let http = field(&line, "http.addr=").expect("http.addr logged");
            let dimse = field(&line, "dimse.addr=").expect("dimse.addr logged");
            let dimse_port = dimse.rsplit(':').next().unwrap().parse().unwrap();
            let dimse_tls_port = field(&line, "dimse.tls_addr=").and_then(|a| a.rsplit(':').next().unwrap().parse().ok());
            // keep draining the log so the hub never blocks on a full pipe
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Served { child, http, dimse_port, dimse_tls_port };
        }
    }
    panic!("readhub serve never logged its addresses");
}

impl Served {
    /// SIGKILL: no drain, no shutdown path.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "killed, not stopped: {status:?}");
    }

    pub async fn queue(&self, who: (&str, &str)) -> Vec<Value> {
        let r = reqwest::Client::new()
            .get(format!("http://{}/api/worklist", self.http))
            .basic_auth(who.0, Some(who.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Poll the reader's queue until an item of `study` is in `state`; how long it took.
    pub async fn until_state(&self, who: (&str, &str), study: &str, state: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let q = self.queue(who).await;
            if q.iter().any(|i| i["study_instance_uid"] == study && i["state"] == state) {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "study {study} not {state} after {limit:?}: {q:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

