//! readhub's settings: embedded defaults, then a TOML file, then `READHUB_<SETTING>`
//! environment variables, then command-line flags (later wins).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Every setting, flat, as it appears in the TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite index and the local object store live.
    pub data_dir: PathBuf,
    /// DICOM listener (host:port; port 0 picks a free one).
    pub dicom_addr: String,
    /// HTTP listener for the API and the web viewer.
    pub http_addr: String,
    /// Our AE title.
    pub ae_title: String,
    /// `sqlite:PATH` or `postgres://…`; default `sqlite:<data_dir>/readhub.db`.
    pub database_url: Option<String>,
    /// `file:///ABS/PATH` or `s3://bucket/prefix`; default `<data_dir>/objects` on disk.
    pub object_store_url: Option<String>,
    /// Seconds after a study's last association ends before it is ready to read, for
    /// modalities not in `quiet_period_by_modality` (a site may set its own: `readhub site
    /// quiet-period`).
    pub quiet_period_secs: u64,
    /// Quiet periods by modality, seconds: a CR/DX film or an ECG comes in one association,
    /// so by default it is ready as soon as that ends (`{ CR = 0, DX = 0, ECG = 0 }`).
    pub quiet_period_by_modality: std::collections::BTreeMap<String, u64>,
    /// Seconds a DICOM peer may stay silent (mid-transfer or idle) before it is aborted.
    pub peer_timeout_secs: u64,
    /// Seconds without new instances after which a study is ready even if its sender
    /// never ended its association (crashed modality, restarted hub).
    pub stall_horizon_secs: u64,
    /// Largest instance accepted, in MiB.
    pub max_instance_mb: u64,
    /// Largest header (attributes before pixel data) accepted, in MiB.
    pub max_header_mb: u64,
    /// DICOM associations served at once.
    pub max_associations: usize,
    /// Largest P-DATA PDU accepted, in bytes.
    pub max_pdu_length: u32,
    /// Register unknown calling AE titles as new sites on first contact (first install only).
    pub open_enrollment: bool,
    /// Base URL clients reach the HTTP API at, for retrieve URLs (e.g. behind a proxy).
    pub public_url: Option<String>,
    /// Origins allowed to call the API from a browser on another host (CORS).
    pub cors_origins: Vec<String>,
    /// Minutes a claim lasts unless renewed (the viewer renews while the reader works).
    pub lease_minutes: u64,
    /// Default turnaround targets in minutes (a pool may set its own): STAT, urgent, routine.
    pub sla_stat_minutes: u64,
    pub sla_urgent_minutes: u64,
    pub sla_routine_minutes: u64,
    /// Local time's offset from UTC in hours, for routing rules by time of day.
    pub utc_offset_hours: i32,
    /// Minutes a critical result may stay unacknowledged before the pool's supervisors
    /// are alerted.
    pub critical_ack_minutes: u64,
    /// The DICOM attribute the modality's priority flag is read from (keyword or
    /// `gggg,eeee`); STAT / HIGH / URGENT raise an item's priority.
    pub priority_attribute: String,
    /// Ordered routing rules (`[[routing_rules]]`); installed as a new rule set version at
    /// start when they differ from the current one. Empty: keep what the admin API set.
    pub routing_rules: Vec<worklist::routing::Rule>,
    /// This process's stable name among the nodes sharing one database (the transfers it
    /// was receiving when it died are ended when it starts again). Default:
    /// `<hostname>:<data_dir>`.
    pub node_name: Option<String>,
    /// In front of a remote object store (S3), instances are acknowledged once durable in
    /// this directory on the node's own disk and uploaded after (README: receive buffer);
    /// `"off"` acknowledges only after the upload. Default `<data_dir>/receive-buffer`;
    /// unused with a local object store.
    pub receive_buffer: Option<String>,
    /// Seconds a node of a cluster may miss its heartbeat (written every 5 s) before the
    /// node running the ticker takes it for dead and ends the transfers it was receiving.
    pub node_timeout_secs: u64,
    /// Sequences nested deeper than this many levels are refused (0xC000 / STOW failure);
    /// at most 128, the deepest readhub opens safely.
    pub max_sequence_depth: usize,
    /// Associations one calling AE title may hold at once.
    pub max_associations_per_ae: usize,
    /// Seconds a new connection has to send its A-ASSOCIATE-RQ before it is closed.
    pub association_request_timeout_secs: u64,
    /// Memory (MiB) that decoding for rendered images, decoded frames and transcoding may
    /// hold at once; further requests wait for their share.
    pub media_memory_mb: u32,
    /// Seconds an HTTP request body may stall (no bytes) before the request is ended.
    pub body_idle_timeout_secs: u64,
    /// Seconds a user name stays locked after 5 failed logins within 15 minutes.
    pub login_lock_secs: u64,
    /// Minutes a login session may go unused before it ends.
    pub session_idle_minutes: u64,
    /// Hours a login session lasts at most, used or not.
    pub session_max_hours: u64,
    /// PEM certificate chain of the hub (from the hospital's CA, or self-signed for a
    /// trial): with `tls_key_file`, the HTTP listener speaks HTTPS only, and the DICOM TLS
    /// listener uses it too.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (unencrypted; readable by the hub only).
    pub tls_key_file: Option<PathBuf>,
    /// A second DICOM listener speaking TLS (DICOM Basic TLS Secure Transport), e.g.
    /// `0.0.0.0:2762`; needs `tls_cert_file`. Off when unset.
    pub dicom_tls_addr: Option<String>,
    /// PEM CA certificate(s): the DICOM TLS listener then requires a client certificate
    /// signed by one of them.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Also send the audit trail as DICOM audit messages (RFC 5424 syslog) to this audit
    /// record repository: `udp://HOST:PORT` or `tls://HOST:PORT`. Off when unset.
    pub audit_syslog_addr: Option<String>,
    /// PEM CA of the audit record repository's certificate (syslog over TLS); the hub
    /// presents its own certificate (`tls_cert_file`) when it has one.
    pub audit_syslog_ca_file: Option<PathBuf>,
    /// Critical-ECG criteria (心电图危急值) that make an ECG item STAT with a suggested
    /// critical result for the reader: `[ecg_critical] heart_rate_below = 40`,
    /// `heart_rate_above = 150`, `qtc_at_least_ms = 500`, and `[[ecg_critical.statements]]`
    /// rules (`name`, `phrases`) matched in the device's interpretation statements.
    pub ecg_critical: ecg::criteria::Rules,
    /// Accept SCP-ECG files (experimental: no independent reader could check readhub's).
    pub ecg_scp_experimental: bool,
    /// gzip whole uncompressed instances (WADO-RS) for HTTP clients that accept it: worth it
    /// only for DICOMweb clients pulling whole studies over a slow line.
    pub gzip_instances: bool,
    /// Render each new image's thumbnails and the viewer's preview in the background after
    /// ingest, and keep them beside the instance (off: rendered on first request, then kept).
    pub prerender: bool,
    /// Folders carts drop ECG files into (HL7 aECG, Philips XML), one per site:
    /// `[[ecg_watch]] site = "Township-1"` `path = "/srv/ecg/township1"`. A file is taken
    /// once its size has not changed for one scan; it moves to `done/` once stored and
    /// acknowledged, or to `refused/` with a `.reason.txt` beside it.
    pub ecg_watch: Vec<EcgWatch>,
    /// Seconds between scans of the watched folders.
    pub ecg_watch_interval_secs: u64,
    /// Listen for HL7 v2 orders (ORM^O01, OMI^O23) over MLLP here, e.g. `0.0.0.0:2575`.
    /// Off when unset. A message's sender (MSH-3, MSH-4) must be mapped to a site
    /// (`readhub site add-hl7-sender`).
    pub hl7_addr: Option<String>,
    /// Minutes an order may wait for its study before its site is alerted.
    pub order_overdue_minutes: u64,
    /// The bearer token `GET /metrics` (Prometheus) asks for. Unset: `/metrics` is off.
    pub metrics_token: Option<String>,
    /// Test fault injection: the hand-over to the worklist stalls (arrivals wait).
    #[serde(skip)]
    pub hold_arrivals: bool,
}

/// One watched folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcgWatch {
    /// the site (by name) the files are stored for
    pub site: String,
    pub path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            dicom_addr: "0.0.0.0:11112".into(),
            http_addr: "127.0.0.1:8080".into(),
            ae_title: "READHUB".into(),
            database_url: None,
            object_store_url: None,
            quiet_period_secs: 10,
            quiet_period_by_modality: worklist::quiet::ONE_ASSOCIATION_MODALITIES.iter().map(|m| (m.to_string(), 0)).collect(),
            peer_timeout_secs: 60,
            stall_horizon_secs: 600,
            max_instance_mb: 4096,
            max_header_mb: 64,
            max_associations: 64,
            max_pdu_length: 256 * 1024,
            open_enrollment: false,
            public_url: None,
            cors_origins: Vec::new(),
            lease_minutes: 15,
            sla_stat_minutes: 30,
            sla_urgent_minutes: 120,
            sla_routine_minutes: 24 * 60,
            utc_offset_hours: 8,
            critical_ack_minutes: 15,
            priority_attribute: "RequestedProcedurePriority".into(),
            routing_rules: Vec::new(),
            node_name: None,
            receive_buffer: None,
            node_timeout_secs: 30,
            max_sequence_depth: 64,
            max_associations_per_ae: 16,
            association_request_timeout_secs: 10,
            media_memory_mb: 256,
            body_idle_timeout_secs: 30,
            login_lock_secs: 15 * 60,
            session_idle_minutes: 120,
            session_max_hours: 12,
            tls_cert_file: None,
            tls_key_file: None,
            dicom_tls_addr: None,
            tls_client_ca_file: None,
            audit_syslog_addr: None,
            audit_syslog_ca_file: None,
            ecg_critical: ecg::criteria::Rules::default(),
            ecg_scp_experimental: false,
            gzip_instances: false,
            prerender: true,
            ecg_watch: Vec::new(),
            ecg_watch_interval_secs: 2,
            hl7_addr: None,
            order_overdue_minutes: 24 * 60,
            metrics_token: None,
            hold_arrivals: false,
        }
    }
}

impl Config {
    /// Read a TOML file over the defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    fn absolute_data_dir(&self) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))?;
        self.data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data directory {}", self.data_dir.display()))
    }

    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(u) => Ok(u.clone()),
            None => Ok(format!("sqlite:{}", self.absolute_data_dir()?.join("readhub.db").display())),
        }
    }

    pub fn object_store_url(&self) -> anyhow::Result<String> {
        match &self.object_store_url {
            Some(u) => Ok(u.clone()),
            None => {
                let dir = self.absolute_data_dir()?.join("objects");
                Ok(url::Url::from_directory_path(&dir)
                    .map_err(|_| anyhow::anyhow!("cannot make a URL of {}", dir.display()))?
                    .to_string())
            }
        }
    }

    /// The TLS files, when TLS is configured; an error when only half of it is.
    pub fn tls_files(&self) -> anyhow::Result<Option<readhub_tls::Files>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(readhub_tls::Files {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca_file.clone(),
            })),
            (None, None) => {
                if self.dicom_tls_addr.is_some() {
                    anyhow::bail!("dicom_tls_addr needs the hub's certificate: set tls_cert_file and tls_key_file (READHUB_TLS_CERT_FILE, READHUB_TLS_KEY_FILE)");
                }
                if self.tls_client_ca_file.is_some() {
                    anyhow::bail!("tls_client_ca_file is for the DICOM TLS listener: set dicom_tls_addr, tls_cert_file and tls_key_file too");
                }
                Ok(None)
            }
            _ => anyhow::bail!("set both tls_cert_file and tls_key_file (READHUB_TLS_CERT_FILE, READHUB_TLS_KEY_FILE), or neither"),
        }
    }

    /// Where the audit trail is forwarded, if anywhere.
    pub fn audit_syslog(&self) -> anyhow::Result<Option<audit::SyslogConfig>> {
        let Some(addr) = self.audit_syslog_addr.as_deref().filter(|a| !a.trim().is_empty()) else { return Ok(None) };
        let tls = match &self.audit_syslog_ca_file {
            Some(ca) => Some(readhub_tls::client(ca, "audit_syslog_ca_file", self.tls_files()?.as_ref()).context("syslog over TLS cannot start")?),
            None => None,
        };
        let target = audit::syslog::Target::parse(addr.trim(), tls).map_err(anyhow::Error::msg)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Ok(Some(audit::SyslogConfig {
            target,
            source: self.ae_title.clone(),
            host: if host.is_empty() { "readhub".into() } else { host },
        }))
    }

    pub fn limits(&self) -> anyhow::Result<storage::Limits> {
        Ok(storage::Limits {
            max_instance_bytes: self.max_instance_mb.saturating_mul(1024 * 1024),
            max_header_bytes: (self.max_header_mb.saturating_mul(1024 * 1024)) as usize,
            max_sequence_depth: self.max_sequence_depth.clamp(1, storage::header::MAX_SEQUENCE_DEPTH_LIMIT),
        })
    }

    pub fn gateway(&self, enrollment_consortium_id: i64) -> dicom_gateway::Config {
        dicom_gateway::Config {
            ae_title: self.ae_title.clone(),
            open_enrollment: self.open_enrollment,
            enrollment_consortium_id,
            peer_timeout: Duration::from_secs(self.peer_timeout_secs.max(1)),
            max_pdu_length: self.max_pdu_length,
            max_associations: self.max_associations.max(1),
            max_associations_per_ae: self.max_associations_per_ae.max(1),
            association_request_timeout: Duration::from_secs(self.association_request_timeout_secs.max(1)),
        }
    }

    pub fn http(&self) -> viewer_api::Config {
        viewer_api::Config {
            public_url: self.public_url.clone(),
            cors_origins: self.cors_origins.clone(),
            media_memory_mb: self.media_memory_mb,
            body_idle_timeout: std::time::Duration::from_secs(self.body_idle_timeout_secs.max(1)),
            tls: self.tls_cert_file.is_some() && self.tls_key_file.is_some(),
            ecg_rules: self.ecg_critical.clone(),
            ecg_scp_experimental: self.ecg_scp_experimental,
            gzip_instances: self.gzip_instances,
            metrics_token: self.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        }
    }

    /// The receive buffer's directory, when there is one: only in front of a remote object
    /// store, and not when set to "off".
    pub fn receive_buffer(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.object_store_url()?.starts_with("file:") {
            return Ok(None);
        }
        match self.receive_buffer.as_deref().map(str::trim) {
            Some("off") => Ok(None),
            Some(dir) if !dir.is_empty() => Ok(Some(PathBuf::from(dir))),
            _ => Ok(Some(self.absolute_data_dir()?.join("receive-buffer"))),
        }
    }

    /// This node's stable name (see `node_name`).
    pub fn node_name(&self) -> anyhow::Result<storage::NodeName> {
        if let Some(n) = self.node_name.as_deref().filter(|n| !n.trim().is_empty()) {
            return Ok(storage::NodeName::new(n.trim()));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Ok(storage::NodeName::new(format!("{host}:{}", self.absolute_data_dir()?.display())))
    }

    pub fn worklist(&self) -> anyhow::Result<worklist::Config> {
        use dicom_core::dictionary::DataDictionary;
        let priority_attribute = dicom_dictionary_std::StandardDataDictionary
            .parse_tag(self.priority_attribute.trim())
            .with_context(|| {
                format!("priority_attribute {:?} is neither a DICOM keyword nor a tag (gggg,eeee)", self.priority_attribute)
            })?;
        Ok(worklist::Config {
            quiet: worklist::quiet::QuietPeriods {
                default: Duration::from_secs(self.quiet_period_secs),
                by_modality: self
                    .quiet_period_by_modality
                    .iter()
                    .map(|(m, s)| (m.trim().to_uppercase(), Duration::from_secs(*s)))
                    .collect(),
            },
            stall_horizon: Duration::from_secs(self.stall_horizon_secs.max(self.peer_timeout_secs)),
            lease: Duration::from_secs(self.lease_minutes.max(1) * 60),
            sla_defaults: [self.sla_stat_minutes, self.sla_urgent_minutes, self.sla_routine_minutes]
                .map(|m| Duration::from_secs(m.max(1) * 60)),
            utc_offset_hours: self.utc_offset_hours,
            critical_ack: Duration::from_secs(self.critical_ack_minutes.max(1) * 60),
            hold_arrivals: self.hold_arrivals,
            priority_attribute,
            login_lock: Duration::from_secs(self.login_lock_secs.max(1)),
            session_idle: Duration::from_secs(self.session_idle_minutes.max(1) * 60),
            session_ttl: Duration::from_secs(self.session_max_hours.max(1) * 3600),
            order_overdue: Duration::from_secs(self.order_overdue_minutes.max(1) * 60),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecg_settings_parse_from_toml() {
        let c: Config = toml::from_str(
            r#"
ecg_scp_experimental = true
[ecg_critical]
heart_rate_below = 45
[[ecg_critical.statements]]
name = "室速 VT"
phrases = ["室速"]
[[ecg_watch]]
site = "Township-1"
path = "/srv/ecg/t1"
"#,
        )
        .unwrap();
        assert!(c.ecg_scp_experimental);
        assert_eq!(c.ecg_critical.heart_rate_below, 45.0);
        assert_eq!(c.ecg_critical.heart_rate_above, 150.0, "unset thresholds keep their defaults");
        assert_eq!(c.ecg_critical.statements.len(), 1);
        assert_eq!(c.ecg_watch, vec![EcgWatch { site: "Township-1".into(), path: "/srv/ecg/t1".into() }]);
        let bad: Result<Config, _> = toml::from_str("[ecg_critical]\nheart_rate_abov = 1\n");
        assert!(bad.is_err(), "a misspelt setting is an error, not ignored");
    }
}
