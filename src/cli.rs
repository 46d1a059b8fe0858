//! The `readhub` command line. Every command works on the same data dir / database as the
//! server and runs without prompts, so scripts can drive it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::Config;

#[derive(Debug, Parser)]
#[command(name = "readhub", version, about = "Regional imaging and ECG remote-reading hub / 远程影像与心电诊断中心")]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// TOML config file (settings not given there keep their defaults)
    #[arg(long, global = true, env = "READHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data]
    #[arg(long, global = true, env = "READHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://USER@HOST/DB [default: sqlite:DATA_DIR/readhub.db]
    #[arg(long, global = true, env = "READHUB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Object store URL: file:///ABS/PATH or s3://BUCKET/PREFIX [default: DATA_DIR/objects]
    #[arg(long, global = true, env = "READHUB_OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: DICOM listener, HTTP API and web viewer
    Serve(ServeArgs),
    /// Community sites and their AE titles
    #[command(subcommand)]
    Site(SiteCommand),
    /// User accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Reading pools and their turnaround targets
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Bring an existing archive in: DICOM files under the paths (folders are walked, a
    /// DICOMDIR names its media's files), through the same checks as C-STORE; a re-run
    /// skips what is in
    Import {
        /// Files, folders or DICOMDIR files
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The site the studies belong to
        #[arg(long)]
        site: String,
        /// Files imported at once [default: the number of CPUs]
        #[arg(long)]
        jobs: Option<usize>,
        /// Queue the studies for reading (default: they are history, the priors of later studies)
        #[arg(long)]
        for_reading: bool,
    },
    /// Back up an embedded install (index and objects) into an empty folder, while it serves
    Backup { dest: PathBuf },
    /// Restore a backup into the configured, empty data directory
    Restore { src: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Add a reading pool (e.g. ct-specialists) to a consortium
    Add {
        name: String,
        #[arg(long, value_parser = ["imaging", "ecg"])]
        kind: String,
        /// Consortium [default: the default consortium]
        #[arg(long)]
        consortium: Option<String>,
    },
    /// List pools with their turnaround targets (minutes)
    List,
    /// Set a pool's turnaround targets in minutes
    Sla {
        pool: String,
        #[arg(long)]
        stat: Option<i64>,
        #[arg(long)]
        urgent: Option<i64>,
        #[arg(long)]
        routine: Option<i64>,
    },
    /// Register a county workstation's AE title with a pool: it may query (C-FIND) and
    /// retrieve (C-MOVE, C-GET) the pool's studies, and store nothing
    AddAe { pool: String, ae: String },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Minutes a claim lasts unless renewed [default: 15]
    #[arg(long, env = "READHUB_LEASE_MINUTES")]
    pub lease_minutes: Option<u64>,
    /// Default STAT turnaround target, minutes [default: 30]
    #[arg(long, env = "READHUB_SLA_STAT_MINUTES")]
    pub sla_stat_minutes: Option<u64>,
    /// Default urgent turnaround target, minutes [default: 120]
    #[arg(long, env = "READHUB_SLA_URGENT_MINUTES")]
    pub sla_urgent_minutes: Option<u64>,
    /// Default routine turnaround target, minutes [default: 1440]
    #[arg(long, env = "READHUB_SLA_ROUTINE_MINUTES")]
    pub sla_routine_minutes: Option<u64>,
    /// Minutes before an unacknowledged critical result escalates [default: 15]
    #[arg(long, env = "READHUB_CRITICAL_ACK_MINUTES")]
    pub critical_ack_minutes: Option<u64>,
    /// Local time's offset from UTC, hours, for routing rules by hour [default: 8]
    #[arg(long, env = "READHUB_UTC_OFFSET_HOURS", allow_hyphen_values = true)]
    pub utc_offset_hours: Option<i32>,
    /// DICOM listener host:port [default: 0.0.0.0:11112]
    #[arg(long, env = "READHUB_DICOM_ADDR")]
    pub dicom_addr: Option<String>,
    /// HTTP listener host:port [default: 127.0.0.1:8080]
    #[arg(long, env = "READHUB_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Our AE title [default: READHUB]
    #[arg(long, env = "READHUB_AE_TITLE")]
    pub ae_title: Option<String>,
    /// Seconds after the last association before a study is ready [default: 10]
    #[arg(long, env = "READHUB_QUIET_PERIOD_SECS")]
    pub quiet_period_secs: Option<u64>,
    /// Seconds a silent DICOM peer is given before it is aborted [default: 60]
    #[arg(long, env = "READHUB_PEER_TIMEOUT_SECS")]
    pub peer_timeout_secs: Option<u64>,
    /// Seconds without new instances before a study is ready anyway [default: 600]
    #[arg(long, env = "READHUB_STALL_HORIZON_SECS")]
    pub stall_horizon_secs: Option<u64>,
    /// Largest instance accepted, MiB [default: 4096]
    #[arg(long, env = "READHUB_MAX_INSTANCE_MB")]
    pub max_instance_mb: Option<u64>,
    /// Largest header before pixel data, MiB [default: 64]
    #[arg(long, env = "READHUB_MAX_HEADER_MB")]
    pub max_header_mb: Option<u64>,
    /// DICOM associations served at once [default: 64]
    #[arg(long, env = "READHUB_MAX_ASSOCIATIONS")]
    pub max_associations: Option<usize>,
    /// Largest P-DATA PDU accepted, bytes [default: 262144]
    #[arg(long, env = "READHUB_MAX_PDU_LENGTH")]
    pub max_pdu_length: Option<u32>,
    /// Register unknown calling AE titles as sites on first contact (first install only)
    #[arg(long, env = "READHUB_OPEN_ENROLLMENT")]
    pub open_enrollment: Option<bool>,
    /// Base URL clients reach the HTTP API at, for retrieve URLs [default: from Host]
    #[arg(long, env = "READHUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Browser origins allowed cross-origin (CORS), comma-separated
    #[arg(long, env = "READHUB_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Associations one calling AE title may hold at once [default: 16]
    #[arg(long, env = "READHUB_MAX_ASSOCIATIONS_PER_AE")]
    pub max_associations_per_ae: Option<usize>,
    /// Seconds a new DICOM connection has to send its association request [default: 10]
    #[arg(long, env = "READHUB_ASSOCIATION_REQUEST_TIMEOUT_SECS")]
    pub association_request_timeout_secs: Option<u64>,
    /// Sequences nested deeper than this are refused [default: 64]
    #[arg(long, env = "READHUB_MAX_SEQUENCE_DEPTH")]
    pub max_sequence_depth: Option<usize>,
    /// Memory (MiB) decoding for rendering and transcoding may hold at once [default: 256]
    #[arg(long, env = "READHUB_MEDIA_MEMORY_MB")]
    pub media_memory_mb: Option<u32>,
    /// Seconds an HTTP request body may stall before the request is ended [default: 30]
    #[arg(long, env = "READHUB_BODY_IDLE_TIMEOUT_SECS")]
    pub body_idle_timeout_secs: Option<u64>,
    /// Seconds a user name stays locked after 5 failed logins in 15 minutes [default: 900]
    #[arg(long, env = "READHUB_LOGIN_LOCK_SECS")]
    pub login_lock_secs: Option<u64>,
    /// Minutes a login session may go unused before it ends [default: 120]
    #[arg(long, env = "READHUB_SESSION_IDLE_MINUTES")]
    pub session_idle_minutes: Option<u64>,
    /// Hours a login session lasts at most [default: 12]
    #[arg(long, env = "READHUB_SESSION_MAX_HOURS")]
    pub session_max_hours: Option<u64>,
    /// PEM certificate chain: with --tls-key-file, HTTP becomes HTTPS only
    #[arg(long, env = "READHUB_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate
    #[arg(long, env = "READHUB_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Second DICOM listener, speaking TLS (e.g. 0.0.0.0:2762) [default: off]
    #[arg(long, env = "READHUB_DICOM_TLS_ADDR")]
    pub dicom_tls_addr: Option<String>,
    /// PEM CA: the DICOM TLS listener requires client certificates signed by it
    #[arg(long, env = "READHUB_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Listen for HL7 v2 orders over MLLP here (e.g. 0.0.0.0:2575) [default: off]
    #[arg(long, env = "READHUB_HL7_ADDR")]
    pub hl7_addr: Option<String>,
    /// Minutes an order may wait for its study before its site is alerted [default: 1440]
    #[arg(long, env = "READHUB_ORDER_OVERDUE_MINUTES")]
    pub order_overdue_minutes: Option<u64>,
    /// Render thumbnails, the viewer's preview and its JPEG-LS frame in the background
    /// after ingest [default: true]
    #[arg(long, env = "READHUB_PRERENDER")]
    pub prerender: Option<bool>,
    /// gzip whole native instances (WADO-RS) for clients that accept it [default: false]
    #[arg(long, env = "READHUB_GZIP_INSTANCES")]
    pub gzip_instances: Option<bool>,
    /// Forward the audit trail as DICOM audit messages (syslog) to udp://HOST:PORT or tls://HOST:PORT
    #[arg(long, env = "READHUB_AUDIT_SYSLOG_ADDR")]
    pub audit_syslog_addr: Option<String>,
    /// PEM CA of the audit record repository's certificate (syslog over TLS)
    #[arg(long, env = "READHUB_AUDIT_SYSLOG_CA_FILE")]
    pub audit_syslog_ca_file: Option<PathBuf>,
    /// The bearer token GET /metrics (Prometheus) asks for [default: /metrics off]
    #[arg(long, env = "READHUB_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// This node's stable name among nodes sharing one database [default: HOSTNAME:DATA_DIR]
    #[arg(long, env = "READHUB_NODE_NAME")]
    pub node_name: Option<String>,
    /// Receive buffer in front of a remote object store: a directory, or "off"
    /// [default: DATA_DIR/receive-buffer when object_store_url is not a local directory]
    #[arg(long, env = "READHUB_RECEIVE_BUFFER")]
    pub receive_buffer: Option<String>,
    /// Seconds a cluster node may miss its heartbeat before its transfers are ended [default: 30]
    #[arg(long, env = "READHUB_NODE_TIMEOUT_SECS")]
    pub node_timeout_secs: Option<u64>,
    /// Tests only: stall the hand-over to the worklist (arrivals wait in the database)
    #[arg(long, env = "READHUB_TEST_HOLD_ARRIVALS", hide = true)]
    pub test_hold_arrivals: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register a community site with its calling AE titles
    Add {
        name: String,
        /// Calling AE title of a modality at this site (repeatable)
        #[arg(long = "ae", required = true)]
        ae: Vec<String>,
        /// Character set for modalities that send none or mislabel GBK as ISO_IR 100
        #[arg(long)]
        charset_fallback: Option<String>,
        /// Consortium (医共体) [default: default]
        #[arg(long)]
        consortium: Option<String>,
        /// The site's HIS as HL7 v2 names itself: sending application (MSH-3), optionally
        /// @facility (MSH-4), e.g. HIS or HIS@TOWNSHIP1 (repeatable)
        #[arg(long = "hl7-sender")]
        hl7_sender: Vec<String>,
    },
    /// Map an HL7 sender (APP or APP@FACILITY, MSH-3/MSH-4) to a site: its orders are the site's
    AddHl7Sender { site: String, sender: String },
    /// Remove an HL7 sender from a site: its messages are refused (NAK) from then on
    RemoveHl7Sender { site: String, sender: String },
    /// Where a registered AE title (a site's or a pool's) listens, so studies may be moved
    /// to it (C-MOVE destination): host:port
    SetAddress { ae: String, address: String },
    /// Where a site's signed reports go (replaces what was set; none given: nowhere)
    Outbound {
        site: String,
        /// its HIS's MLLP listener (HL7 ORU^R01), host:port
        #[arg(long)]
        hl7: Option<String>,
        /// its FHIR server's base URL (DiagnosticReport)
        #[arg(long)]
        fhir: Option<String>,
        /// its PACS (the report as an Encapsulated PDF in the study), AE@host:port
        #[arg(long)]
        pacs: Option<String>,
    },
    /// How long the site's studies wait after their association ends before they are
    /// ready to read (for one modality, or all), overriding the hub's quiet_period settings
    QuietPeriod {
        site: String,
        /// seconds (0: ready as soon as the association ends); omit with --clear
        #[arg(required_unless_present = "clear")]
        seconds: Option<u64>,
        /// only for this modality (CR, DX, CT, ECG …)
        #[arg(long)]
        modality: Option<String>,
        /// remove the site's own setting: the hub's applies again
        #[arg(long, conflicts_with = "seconds")]
        clear: bool,
    },
    /// List sites
    List,
    /// Bind a site to a modality's client certificate: its AE titles are then accepted only
    /// over DICOM TLS (dicom_tls_addr) with this certificate or another bound one
    BindCert {
        site: String,
        /// The client certificate (PEM)
        #[arg(long, conflicts_with = "fingerprint", required_unless_present = "fingerprint")]
        cert: Option<PathBuf>,
        /// Or its SHA-256 fingerprint (openssl x509 -noout -fingerprint -sha256)
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Rename a site (its patients' Issuer of Patient ID stays the same)
    Rename { site: String, new_name: String },
    /// Remove a calling AE title from a site: refused from the next association on
    RemoveAe { site: String, ae: String },
    /// Unbind a certificate from a site (with none left, plain DICOM is accepted again)
    UnbindCert {
        site: String,
        #[arg(long)]
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "technician", "reader", "referrer"])]
        role: String,
        /// Site of a technician or referrer
        #[arg(long, conflicts_with = "pool")]
        site: Option<String>,
        /// Pool of a reader (e.g. imaging, ecg)
        #[arg(long)]
        pool: Option<String>,
        /// Name shown on reports [default: NAME]
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from standard input (required: no password is ever defaulted)
        #[arg(long, required = true)]
        password_stdin: bool,
        /// A reader's seniority: a senior signs off juniors' reports where the pool asks
        #[arg(long, value_parser = ["junior", "senior"])]
        seniority: Option<String>,
        /// A reader who supervises the pool: gets its alerts, may reassign its work
        #[arg(long)]
        supervisor: bool,
        /// Modalities a reader reads, comma-separated (e.g. CR,DX) [default: all]
        #[arg(long, value_delimiter = ',')]
        modalities: Vec<String>,
        /// A reader's daily duty hours, local FROM-TO (e.g. 8-17, 20-8) [default: always]
        #[arg(long)]
        duty_hours: Option<String>,
    },
    /// Disable an account: its sessions end at once, it can no longer sign in
    Disable { name: String },
    /// Reset a user's password (read from standard input); their sessions and tokens end
    Password {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Enable a disabled account again
    Enable { name: String },
}

/// A password from standard input (one line; the newline is not part of it).
fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("cannot read the password from standard input")?;
    Ok(password.trim_end_matches(['\n', '\r']).to_string())
}

async fn site_named(db: &storage::Db, name: &str) -> anyhow::Result<storage::Site> {
    storage::sites::site_by_name(db, name)
        .await?
        .with_context(|| format!("no site named {name:?} (readhub site list shows them)"))
}

fn fingerprint_arg(text: &str) -> anyhow::Result<readhub_tls::Fingerprint> {
    readhub_tls::Fingerprint::parse(text)
        .with_context(|| format!("{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"))
}

impl Cli {
    /// Defaults → file → environment/flags (clap already put flags over environment).
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.common.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        if let Some(v) = &self.common.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.common.database_url {
            c.database_url = Some(v.clone());
        }
        if let Some(v) = &self.common.object_store_url {
            c.object_store_url = Some(v.clone());
        }
        if let Command::Serve(s) = &self.command {
            macro_rules! over {
                ($($f:ident),*) => { $( if let Some(v) = &s.$f { c.$f = v.clone(); } )* };
            }
            over!(dicom_addr, http_addr, ae_title, quiet_period_secs, peer_timeout_secs, stall_horizon_secs,
                  max_instance_mb, max_header_mb, max_associations, max_pdu_length, open_enrollment, cors_origins,
                  lease_minutes, sla_stat_minutes, sla_urgent_minutes, sla_routine_minutes, utc_offset_hours,
                  critical_ack_minutes, max_sequence_depth, max_associations_per_ae, association_request_timeout_secs,
                  media_memory_mb, body_idle_timeout_secs, login_lock_secs, session_idle_minutes, session_max_hours,
                  order_overdue_minutes, prerender, gzip_instances, node_timeout_secs);
            if let Some(u) = &s.public_url {
                c.public_url = Some(u.clone());
            }
            if let Some(n) = &s.node_name {
                c.node_name = Some(n.clone());
            }
            macro_rules! over_opt {
                ($($f:ident),*) => { $( if let Some(v) = &s.$f { c.$f = Some(v.clone()); } )* };
            }
            over_opt!(tls_cert_file, tls_key_file, dicom_tls_addr, tls_client_ca_file, audit_syslog_addr, audit_syslog_ca_file, hl7_addr, metrics_token, receive_buffer);
            if let Some(h) = s.test_hold_arrivals {
                c.hold_arrivals = h;
            }
        }
        Ok(c)
    }
}

impl Command {
    /// What a command changes, for the audit trail (`None`: it only reads).
    fn audit_action(&self) -> Option<audit::Action> {
        match self {
            Command::Site(SiteCommand::List) | Command::Pool(PoolCommand::List) | Command::Serve(_) => None,
            Command::Site(_) => Some(audit::Action::SiteChange),
            Command::User(_) => Some(audit::Action::UserChange),
            Command::Pool(_) => Some(audit::Action::SettingsChange),
            Command::Import { .. } | Command::Restore { .. } => Some(audit::Action::Store),
            // every patient's data leaves the hub's own storage
            Command::Backup { .. } => Some(audit::Action::Retrieve),
        }
    }
}

/// Run a non-serve command; what it changed goes into the audit trail, as the command line
/// (passwords come on standard input, never in it) and the operating-system user who ran it.
pub async fn admin_command(config: &Config, command: &Command) -> anyhow::Result<()> {
    if let Command::Restore { src } = command {
        // into an empty data directory: nothing may be opened (created) there before
        let made = crate::backup::restore(config, src).await?;
        println!(
            "restored {} studies, {} instances, {} reports, {} users ({} object files, {} MB) into {} / 恢复完成",
            made.studies, made.instances, made.reports, made.users, made.object_files, made.bytes / 1_000_000, config.data_dir.display()
        );
        let (storage, _, _) = crate::open(config).await.context("the restored install does not open")?;
        record_cli_event(&storage, command, &Ok(())).await;
        storage.db.close().await;
        return Ok(());
    }
    let (storage, worklist, default_consortium) = crate::open(config).await?;
    let result = match command {
        Command::Import { paths, site, jobs, for_reading } => {
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let opts = crate::import::Options { paths: paths.clone(), site: site.clone(), jobs, for_reading: *for_reading };
            crate::import::run(&storage, &config.node_name()?, &opts).await.map(|s| print_import_summary(&s))
        }
        Command::Backup { dest } => crate::backup::backup(config, &storage, dest).await.map(|made| {
            println!(
                "backed up {} studies, {} instances, {} reports, {} users ({} object files, {} MB) into {} / 备份完成",
                made.studies, made.instances, made.reports, made.users, made.object_files, made.bytes / 1_000_000, dest.display()
            )
        }),
        _ => run_admin_command(&storage, &worklist, default_consortium, command).await,
    };
    record_cli_event(&storage, command, &result).await;
    storage.db.close().await;
    result
}

fn print_import_summary(s: &crate::import::Summary) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    println!(
        "imported {} new instances and {} new versions ({} MB, {:.1} MB/s); {} already in; {} refused; in {:.1} s / 导入完成",
        s.stored,
        s.new_versions,
        s.bytes / 1_000_000,
        s.bytes as f64 / 1e6 / secs,
        s.already_in,
        s.refused.len(),
        secs
    );
    if !s.refused.is_empty() {
        println!("refused / 拒收:");
        for (path, why) in &s.refused {
            println!("  {}: {why}", path.display());
        }
    }
}

/// What a command changed goes into the audit trail, as the command line (passwords come on
/// standard input, never in it) and the operating-system user who ran it.
async fn record_cli_event(storage: &storage::Storage, command: &Command, result: &anyhow::Result<()>) {
    if let Some(action) = command.audit_action() {
        let os_user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
        let actor = audit::Actor { username: Some(format!("cli:{os_user}")), role: Some("cli".into()), ..Default::default() };
        let outcome = if result.is_ok() { audit::Outcome::Success } else { audit::Outcome::Failed };
        let line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let event = audit::Event::new(actor, action, outcome).detail(format!("readhub {line}"));
        if let Err(e) = audit::record_now(&storage.db, event).await {
            eprintln!("warning: the audit trail could not record this command: {e}");
        }
    }
}

async fn run_admin_command(
    storage: &storage::Storage,
    worklist: &worklist::Worklist,
    default_consortium: i64,
    command: &Command,
) -> anyhow::Result<()> {
    let db = &storage.db;
    match command {
        Command::Serve(_) => unreachable!("serve is handled by main"),
        Command::Import { .. } | Command::Backup { .. } | Command::Restore { .. } => unreachable!("handled by admin_command"),
        Command::Site(SiteCommand::Add { name, ae, charset_fallback, consortium, hl7_sender }) => {
            let cid = match consortium {
                Some(c) => storage::sites::ensure_consortium(db, c).await?,
                None => default_consortium,
            };
            // checked before the site exists, so a typo leaves nothing half-made
            let senders = hl7_sender.iter().map(|s| storage::sites::Hl7Sender::parse(s)).collect::<Result<Vec<_>, _>>()?;
            let site = storage::sites::add_site(db, name, cid, ae, charset_fallback.as_deref()).await?;
            for s in &senders {
                storage::sites::add_hl7_sender(db, site.id, s).await?;
            }
            let senders = senders.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
            println!("site {} added (id {}, AE titles {}, HL7 senders {})", site.name, site.id, site.ae_titles.join(", "),
                if senders.is_empty() { "-" } else { &senders });
        }
        Command::Site(SiteCommand::AddHl7Sender { site, sender }) => {
            let s = site_named(db, site).await?;
            let sender = storage::sites::Hl7Sender::parse(sender)?;
            storage::sites::add_hl7_sender(db, s.id, &sender).await?;
            println!("HL7 sender {sender} mapped to site {}: its orders are the site's", s.name);
        }
        Command::Site(SiteCommand::SetAddress { ae, address }) => {
            let (host, port) = address.rsplit_once(':').with_context(|| format!("{address:?}: give host:port"))?;
            let port: u16 = port.parse().with_context(|| format!("{address:?}: the port is not a number"))?;
            storage::sites::set_node_address(db, ae, host, port).await?;
            println!("AE title {ae} listens at {host}:{port}: studies may be moved to it");
        }
        Command::Site(SiteCommand::Outbound { site, hl7, fhir, pacs }) => {
            let s = site_named(db, site).await?;
            let pacs = match pacs {
                None => None,
                Some(p) => {
                    let (ae, addr) = p.split_once('@').with_context(|| format!("--pacs {p:?}: give AE@host:port"))?;
                    let (host, port) = addr.rsplit_once(':').with_context(|| format!("--pacs {p:?}: give AE@host:port"))?;
                    let port = port.parse().with_context(|| format!("--pacs {p:?}: the port is not a number"))?;
                    Some(worklist::results::PacsDestination { ae_title: ae.to_string(), host: host.to_string(), port })
                }
            };
            let outbound = worklist::results::Outbound { hl7: hl7.clone(), fhir: fhir.clone(), pacs };
            worklist.set_site_outbound(s.id, &outbound).await?;
            let mut to: Vec<String> = Vec::new();
            if let Some(h) = &outbound.hl7 {
                to.push(format!("HL7 {h}"));
            }
            if let Some(f) = &outbound.fhir {
                to.push(format!("FHIR {f}"));
            }
            if let Some(p) = &outbound.pacs {
                to.push(format!("PACS {}@{}:{}", p.ae_title, p.host, p.port));
            }
            println!("site {}: reports go to {}", s.name, if to.is_empty() { "nowhere".to_string() } else { to.join(", ") });
        }
        Command::Site(SiteCommand::RemoveHl7Sender { site, sender }) => {
            let s = site_named(db, site).await?;
            let sender = storage::sites::Hl7Sender::parse(sender)?;
            if !storage::sites::remove_hl7_sender(db, s.id, &sender).await? {
                bail!("site {} has no HL7 sender {sender} (readhub site list shows them)", s.name);
            }
            println!("HL7 sender {sender} removed from site {}", s.name);
        }
        Command::Site(SiteCommand::QuietPeriod { site, seconds, modality, clear: _ }) => {
            let s = site_named(db, site).await?;
            let what = modality.as_deref().map_or("all modalities".to_string(), |m| format!("modality {m}"));
            let changed = worklist.set_site_quiet_period(s.id, modality.as_deref(), seconds.map(Duration::from_secs)).await?;
            match seconds {
                Some(secs) => println!("site {} ({what}): studies are ready {secs} s after their association ends", s.name),
                None if changed => println!("site {} ({what}): the hub's quiet period applies again", s.name),
                None => bail!("site {} has no quiet period of its own for {what}", s.name),
            }
        }
        Command::Site(SiteCommand::List) => {
            for s in storage::sites::list_sites(db).await? {
                let certs = storage::sites::certificates_of(db, s.id).await?;
                let hl7 = storage::sites::hl7_senders_of(db, s.id).await?;
                let quiet = worklist.site_quiet_periods(s.id).await?;
                println!(
                    "{}\t{}\tAE: {}\tHL7: {}\tcharset fallback: {}\tcertificates: {}\tquiet period: {}",
                    s.id,
                    s.name,
                    s.ae_titles.join(","),
                    if hl7.is_empty() { "-".to_string() } else { hl7.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",") },
                    s.charset_fallback.as_deref().unwrap_or("-"),
                    if certs.is_empty() { "-".to_string() } else { certs.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",") },
                    if quiet.is_empty() {
                        "hub's".to_string()
                    } else {
                        quiet
                            .iter()
                            .map(|q| format!("{}={}s", q.modality.as_deref().unwrap_or("*"), q.quiet_ms / 1000))
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                );
            }
        }
        Command::Site(SiteCommand::BindCert { site, cert, fingerprint }) => {
            let site = site_named(db, site).await?;
            let fp = match (cert, fingerprint) {
                (Some(path), _) => readhub_tls::fingerprint_of_file(path)?,
                (None, Some(f)) => fingerprint_arg(f)?,
                (None, None) => bail!("give --cert FILE or --fingerprint HEX"),
            };
            storage::sites::bind_certificate(db, site.id, &fp).await?;
            println!("site {} bound to certificate {fp}: its AE titles now store over DICOM TLS with it only", site.name);
        }
        Command::Site(SiteCommand::Rename { site, new_name }) => {
            let s = site_named(db, site).await?;
            let renamed = storage::sites::rename_site(db, s.id, new_name).await?;
            println!("site {} renamed to {} (issuer of its patients stays {})", s.name, renamed.name, renamed.issuer);
        }
        Command::Site(SiteCommand::RemoveAe { site, ae }) => {
            let s = site_named(db, site).await?;
            if !storage::sites::remove_ae_title(db, s.id, ae).await? {
                bail!("site {} has no AE title {ae:?} (readhub site list shows them)", s.name);
            }
            println!("AE title {ae} removed from site {}: its associations are refused from now on", s.name);
        }
        Command::Site(SiteCommand::UnbindCert { site, fingerprint }) => {
            let site = site_named(db, site).await?;
            if !storage::sites::unbind_certificate(db, site.id, &fingerprint_arg(fingerprint)?).await? {
                bail!("certificate {fingerprint} is not bound to site {}", site.name);
            }
            println!("certificate {fingerprint} unbound from site {}", site.name);
        }
        Command::User(UserCommand::Add {
            name,
            role,
            site,
            pool,
            display_name,
            password_stdin,
            seniority,
            supervisor,
            modalities,
            duty_hours,
        }) => {
            if !password_stdin {
                bail!("give --password-stdin and the password on standard input");
            }
            let password = read_password()?;
            let password = password.as_str();
            let role = worklist::Role::try_from(role.as_str())?;
            let site_id = match site {
                Some(s) => Some(
                    storage::sites::site_by_name(db, s)
                        .await?
                        .with_context(|| format!("no site named {s:?}: add it with `readhub site add`"))?
                        .id,
                ),
                None => None,
            };
            let pool_id = match pool {
                Some(p) => Some(worklist.pool_by_name(p).await?.id),
                None => None,
            };
            let user = worklist
                .add_user(name, display_name.as_deref().unwrap_or(name), role, site_id, pool_id, password)
                .await?;
            let user = if seniority.is_some() || *supervisor || !modalities.is_empty() || duty_hours.is_some() {
                let q = worklist::directory::ReaderQualifications {
                    seniority: worklist::Seniority::try_from(seniority.as_deref().unwrap_or("junior"))?,
                    supervisor: *supervisor,
                    modalities: modalities.clone(),
                    duty_hours: duty_hours.clone(),
                };
                worklist.set_qualifications(user.id, &q).await?
            } else {
                user
            };
            println!("user {} added (id {}, role {}, {})", user.username, user.id, user.role, user.seniority);
        }
        Command::User(UserCommand::Password { name, password_stdin: _ }) => {
            let user = worklist.user_by_name(name).await?.with_context(|| format!("no user named {name:?}"))?;
            worklist.set_password(&user, &read_password()?, None).await?;
            println!("password of {} reset; its sessions have ended", user.username);
        }
        Command::User(UserCommand::Disable { name } | UserCommand::Enable { name }) => {
            let disable = matches!(command, Command::User(UserCommand::Disable { .. }));
            let user = worklist.user_by_name(name).await?.with_context(|| format!("no user named {name:?}"))?;
            worklist.set_disabled(&user, disable).await?;
            println!("user {} {}", user.username, if disable { "disabled; its sessions have ended" } else { "enabled" });
        }
        Command::Pool(PoolCommand::Add { name, kind, consortium }) => {
            let c = consortium.as_deref().unwrap_or(storage::sites::DEFAULT_CONSORTIUM);
            let cid = storage::sites::consortium_id(db, c).await?.with_context(|| format!("no consortium named {c:?}"))?;
            let pool = worklist.add_pool(cid, name, worklist::PoolKind::try_from(kind.as_str())?).await?;
            println!("pool {} added (id {}, {})", pool.name, pool.id, pool.kind);
        }
        Command::Pool(PoolCommand::List) => {
            println!("{:<6} {:<24} {:<8} {:>6} {:>7} {:>8}", "id", "name", "kind", "STAT", "urgent", "routine");
            for p in worklist.pools().await? {
                let mut m = Vec::new();
                for pr in [worklist::Priority::Stat, worklist::Priority::Urgent, worklist::Priority::Routine] {
                    m.push(worklist.sla_target(p.id, pr).await? / 60_000);
                }
                println!("{:<6} {:<24} {:<8} {:>6} {:>7} {:>8}", p.id, p.name, p.kind, m[0], m[1], m[2]);
            }
        }
        Command::Pool(PoolCommand::AddAe { pool, ae }) => {
            let p = worklist.pool_by_name(pool).await?;
            storage::sites::add_pool_ae(db, p.id, ae).await?;
            println!("AE title {ae} registered with pool {}: it may query and retrieve the pool's studies", p.name);
        }
        Command::Pool(PoolCommand::Sla { pool, stat, urgent, routine }) => {
            let p = worklist.pool_by_name(pool).await?;
            for (pr, m) in [(worklist::Priority::Stat, stat), (worklist::Priority::Urgent, urgent), (worklist::Priority::Routine, routine)] {
                if let Some(m) = m {
                    worklist.set_sla_target(p.id, pr, *m).await?;
                }
            }
            println!("pool {} targets updated", p.name);
        }
    }
    Ok(())
}
