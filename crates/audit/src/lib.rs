//! The audit trail: who read or changed which patient's data, when, from where, and with
//! what outcome (the `audit_log` table; append-only, its triggers refuse UPDATE and DELETE).
//!
//! Recording must not slow QIDO and WADO: [`AuditLog::record`] only queues the event; one
//! writer task per process gathers events for up to 100 ms and inserts them in one
//! transaction (a busy hub writes ten transactions a second, not one per request) and looks up the study's patient for events that name an item, a report or a
//! study only, off the request path. [`AuditLog::flush`] waits until everything queued
//! before it is in the table (admins' queries flush first, so they see their own node's
//! latest events). Events still queued when a process is killed are lost (at most about
//! 100 ms' worth); a clean stop flushes.

mod query;
pub mod syslog;

use std::time::Duration;

use storage::db::{now_ms, Db};
use tokio::sync::{mpsc, oneshot};

pub use query::{query, utc, Entry, Filter, PAGE_MAX};

/// What was done. The names are the `action` column and the query filter's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Login,
    Logout,
    /// QIDO-RS search (studies, series, instances)
    Query,
    /// WADO-RS retrieve of a study, series or instance
    Retrieve,
    /// WADO-RS frames
    Frames,
    /// rendered image or thumbnail
    Rendered,
    /// metadata or bulk data
    Metadata,
    /// STOW-RS store
    Store,
    /// a C-STORE association's instances
    DicomStore,
    Waveform,
    /// a worklist item opened (its details, events, priors)
    ItemView,
    /// a reading queue or a site's study list
    ListView,
    /// claim, release, reassign, route, priority, reject
    ItemChange,
    ReportView,
    ReportPrint,
    ReportPdf,
    /// draft, submit, send back, preliminary
    ReportEdit,
    ReportSign,
    ReportCorrect,
    CriticalFlag,
    CriticalAck,
    UserChange,
    SiteChange,
    /// routing rules, pools, SLA targets
    SettingsChange,
    /// the audit trail itself read or exported
    AuditRead,
    /// an order placed, changed or cancelled (HL7, FHIR, the desk)
    Order,
    /// any other API call (the route is in the detail)
    Other,
}

impl Action {
    pub const ALL: [Action; 27] = [
        Action::Login,
        Action::Logout,
        Action::Query,
        Action::Retrieve,
        Action::Frames,
        Action::Rendered,
        Action::Metadata,
        Action::Store,
        Action::DicomStore,
        Action::Waveform,
        Action::ItemView,
        Action::ListView,
        Action::ItemChange,
        Action::ReportView,
        Action::ReportPrint,
        Action::ReportPdf,
        Action::ReportEdit,
        Action::ReportSign,
        Action::ReportCorrect,
        Action::CriticalFlag,
        Action::CriticalAck,
        Action::UserChange,
        Action::SiteChange,
        Action::SettingsChange,
        Action::AuditRead,
        Action::Order,
        Action::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Logout => "logout",
            Action::Query => "query",
            Action::Retrieve => "retrieve",
            Action::Frames => "frames",
            Action::Rendered => "rendered",
            Action::Metadata => "metadata",
            Action::Store => "store",
            Action::DicomStore => "dicom_store",
            Action::Waveform => "waveform",
            Action::ItemView => "item_view",
            Action::ListView => "list_view",
            Action::ItemChange => "item_change",
            Action::ReportView => "report_view",
            Action::ReportPrint => "report_print",
            Action::ReportPdf => "report_pdf",
            Action::ReportEdit => "report_edit",
            Action::ReportSign => "report_sign",
            Action::ReportCorrect => "report_correct",
            Action::CriticalFlag => "critical_flag",
            Action::CriticalAck => "critical_ack",
            Action::UserChange => "user_change",
            Action::SiteChange => "site_change",
            Action::SettingsChange => "settings_change",
            Action::AuditRead => "audit_read",
            Action::Order => "order",
            Action::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// not signed in, wrong password, locked, not allowed, or not visible to the caller
    Denied,
    /// refused as invalid, or failed in the hub
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome an HTTP status means.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=399 => Outcome::Success,
            401 | 403 | 404 | 429 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// What the patient data of an event is named by; the writer finds the study and its
/// patient from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    None,
    Study(String),
    /// a worklist item (its study)
    Item(i64),
    /// a report (its item's study)
    Report(i64),
    /// a critical result (its item's study)
    Critical(i64),
    /// a patient named directly (a QIDO search by PatientID)
    Patient { patient_id: String },
}

/// Who did it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub username: Option<String>,
    pub role: Option<String>,
    pub site_id: Option<i64>,
    pub pool_id: Option<i64>,
    /// a site named directly (a C-STORE association's sending site)
    pub site_name: Option<String>,
    pub client: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: i64,
    pub actor: Actor,
    pub action: Action,
    pub outcome: Outcome,
    /// one row per subject (a STOW of two studies is two rows); none: one row without
    pub subjects: Vec<Subject>,
    pub detail: String,
}

impl Event {
    pub fn new(actor: Actor, action: Action, outcome: Outcome) -> Self {
        Event { at: now_ms(), actor, action, outcome, subjects: Vec::new(), detail: String::new() }
    }

    pub fn subject(mut self, s: Subject) -> Self {
        if s != Subject::None && !self.subjects.contains(&s) {
            self.subjects.push(s);
        }
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }
}

/// At most this many subjects per event are written (a STOW of thousands of studies is
/// not a thing; a crafted one must not make the writer loop).
const MAX_SUBJECTS: usize = 1000;

/// Events queued at most; beyond it `record` waits (the writer is behind: the database is
/// slow or gone).
const QUEUE: usize = 16 * 1024;

/// Events written per transaction at most.
const BATCH: usize = 2000;

/// How long the writer gathers events after the first before it writes them: a reader
/// paging through a study makes a request every few milliseconds, and one transaction per
/// request cost QIDO a measurable 0.4 ms (BENCHMARKS.md). This is also what a kill -9 can
/// lose of the trail at most (a clean stop writes everything).
const LINGER: Duration = Duration::from_millis(100);

/// How long `record` waits for room in a full queue before it gives the event to the log
/// instead. Short: when the database cannot take the trail (its disk is full, it is gone)
/// the writer retries and the queue fills; reads that can still be served should not each
/// wait long for that (5 s made every QIDO a 5 s one). The log line keeps what was lost.
const RECORD_WAIT: Duration = Duration::from_millis(250);

enum Msg {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// One written row, as the syslog forwarder reads it.
pub(crate) struct Row<'a> {
    pub at: i64,
    pub username: Option<&'a str>,
    pub role: Option<&'a str>,
    pub site: Option<&'a str>,
    pub client: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub study_uid: Option<&'a str>,
    pub patient_id: Option<&'a str>,
    pub patient_issuer: Option<&'a str>,
    pub detail: &'a str,
}

/// Where written rows are also sent (`audit_syslog_addr`), and how the hub names itself
/// there (AuditSourceID: its AE title; the host name).
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub target: syslog::Target,
    pub source: String,
    pub host: String,
}

/// The handle requests record through (cheap to clone).
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditLog {
    /// Start the writer on `db`; it ends when every handle is dropped, after writing what
    /// was queued.
    pub fn start(db: Db) -> (AuditLog, tokio::task::JoinHandle<()>) {
        Self::start_with(db, None)
    }

    /// [`AuditLog::start`], also forwarding every row to a syslog audit repository.
    pub fn start_with(db: Db, syslog: Option<SyslogConfig>) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let forward = syslog.map(|c| (syslog::Forwarder::start(c.target.clone()), c));
        let writer = tokio::spawn(write_loop(db, rx, forward));
        (AuditLog { tx }, writer)
    }

    /// Queue an event.
    pub async fn record(&self, event: Event) {
        match self.tx.send_timeout(Msg::Event(Box::new(event)), RECORD_WAIT).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(Msg::Event(e)) | mpsc::error::SendTimeoutError::Closed(Msg::Event(e))) => {
                tracing::error!(audit.action = e.action.as_str(), audit.user = ?e.actor.username, audit.outcome = e.outcome.as_str(),
                    audit.subjects = ?e.subjects, audit.detail = %e.detail, "audit event not written: the audit writer is behind or stopped");
            }
            Err(_) => {}
        }
    }

    /// Wait until every event queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Write one event at once, without the queue (the CLI, which has no writer running).
pub async fn record_now(db: &Db, event: Event) -> Result<(), storage::Error> {
    write_rows(db, &[event]).await.map(|_| ())
}

async fn write_loop(db: Db, mut rx: mpsc::Receiver<Msg>, forward: Option<(syslog::Forwarder, SyslogConfig)>) {
    let mut batch: Vec<Event> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // gather for up to LINGER after the first event (or until a batch is full, or a
        // flush is asked for): one transaction carries a stream of requests, not one each
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(*e),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() >= BATCH || !flushes.is_empty() {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
        }
        let mut wait = Duration::from_millis(100);
        while !batch.is_empty() {
            match write_rows(&db, &batch).await {
                Ok(rows) => {
                    if let Some((f, c)) = &forward {
                        for r in &rows {
                            f.send(syslog::message(&r.as_row(), &c.source, &c.host));
                        }
                    }
                    batch.clear()
                }
                Err(e) => {
                    // keep the batch and try again: the queue holds the rest meanwhile
                    tracing::error!(error = %e, events = batch.len(), "cannot write the audit trail; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The row values of one subject.
#[derive(Default, Clone)]
struct Found {
    study_uid: Option<String>,
    patient_id: Option<String>,
    issuer: Option<String>,
}

/// A row as written (owned), for the forwarder.
struct Written {
    at: i64,
    username: Option<String>,
    role: Option<String>,
    site: Option<String>,
    client: Option<String>,
    action: &'static str,
    outcome: &'static str,
    found: Found,
    detail: String,
}

impl Written {
    fn as_row(&self) -> Row<'_> {
        Row {
            at: self.at,
            username: self.username.as_deref(),
            role: self.role.as_deref(),
            site: self.site.as_deref(),
            client: self.client.as_deref(),
            action: self.action,
            outcome: self.outcome,
            study_uid: self.found.study_uid.as_deref(),
            patient_id: self.found.patient_id.as_deref(),
            patient_issuer: self.found.issuer.as_deref(),
            detail: &self.detail,
        }
    }
}

async fn write_rows(db: &Db, events: &[Event]) -> Result<Vec<Written>, storage::Error> {
    use sqlx::Row;
    let mut written = Vec::new();
    let mut tx = db.begin_write().await?;
    let mut names: std::collections::HashMap<(bool, i64), Option<String>> = Default::default();
    // a reader paging through one study names it in every request: look it up once a batch
    let mut lookups: std::collections::HashMap<Subject, Found> = Default::default();
    for e in events {
        let mut name_of = async |pool: bool, id: Option<i64>| -> Result<Option<String>, storage::Error> {
            let Some(id) = id else { return Ok(None) };
            if let Some(n) = names.get(&(pool, id)) {
                return Ok(n.clone());
            }
            let sql = if pool { "SELECT name FROM pools WHERE id = $1" } else { "SELECT name FROM sites WHERE id = $1" };
            let n: Option<String> = sqlx::query(sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(storage::Error::db("audit: name of site or pool"))?
                .map(|r| r.get(0));
            names.insert((pool, id), n.clone());
            Ok(n)
        };
        let site = match &e.actor.site_name {
            Some(n) => Some(n.clone()),
            None => name_of(false, e.actor.site_id).await?,
        };
        let pool = name_of(true, e.actor.pool_id).await?;
        let subjects: Vec<&Subject> = if e.subjects.is_empty() { vec![&Subject::None] } else { e.subjects.iter().take(MAX_SUBJECTS).collect() };
        for s in subjects {
            let found = match lookups.get(s) {
                Some(f) => f.clone(),
                None => {
                    let f = find(&mut tx, s).await?;
                    lookups.insert(s.clone(), f.clone());
                    f
                }
            };
            sqlx::query(
                "INSERT INTO audit_log (at, username, role, site, pool, client, action, outcome, study_uid, patient_id, patient_issuer, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(e.at)
            .bind(e.actor.username.as_deref())
            .bind(e.actor.role.as_deref())
            .bind(site.as_deref())
            .bind(pool.as_deref())
            .bind(e.actor.client.as_deref())
            .bind(e.action.as_str())
            .bind(e.outcome.as_str())
            .bind(found.study_uid.as_deref())
            .bind(found.patient_id.as_deref())
            .bind(found.issuer.as_deref())
            .bind(e.detail.as_str())
            .execute(&mut *tx)
            .await
            .map_err(storage::Error::db("insert audit event"))?;
            written.push(Written {
                at: e.at,
                username: e.actor.username.clone(),
                role: e.actor.role.clone(),
                site: site.clone(),
                client: e.actor.client.clone(),
                action: e.action.as_str(),
                outcome: e.outcome.as_str(),
                found,
                detail: e.detail.clone(),
            });
        }
    }
    tx.commit().await?;
    Ok(written)
}

/// The study and patient a subject names (a study UID that two sites both hold names
/// the first one's patient: such a pair is refused at ingest since issue 12, and older
/// data keeps its UID in the row either way).
async fn find(tx: &mut storage::db::WriteTx<'_>, s: &Subject) -> Result<Found, storage::Error> {
    use sqlx::Row;
    macro_rules! by {
        ($rest:literal) => {
            concat!("SELECT s.study_uid, p.patient_id, p.issuer FROM studies s JOIN patients p ON p.id = s.patient_id ", $rest)
        };
    }
    let row = match s {
        Subject::None => return Ok(Found::default()),
        Subject::Patient { patient_id } => return Ok(Found { patient_id: Some(patient_id.clone()), ..Found::default() }),
        Subject::Study(uid) => {
            let row = sqlx::query(by!("WHERE s.study_uid = $1 ORDER BY s.id LIMIT 1"))
                .bind(uid.as_str())
                .fetch_optional(&mut **tx)
                .await
                .map_err(storage::Error::db("audit: patient of a study"))?;
            if row.is_none() {
                return Ok(Found { study_uid: Some(uid.clone()), ..Found::default() });
            }
            row
        }
        Subject::Item(id) => sqlx::query(by!("JOIN worklist_items i ON i.study_id = s.id WHERE i.id = $1"))
            .bind(*id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(storage::Error::db("audit: study of an item"))?,
        Subject::Report(id) => sqlx::query(by!("JOIN reports r ON r.study_id = s.id WHERE r.id = $1"))
            .bind(*id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(storage::Error::db("audit: study of a report"))?,
        Subject::Critical(id) => sqlx::query(by!(
            "JOIN worklist_items i ON i.study_id = s.id JOIN critical_results c ON c.item_id = i.id WHERE c.id = $1"
        ))
        .bind(*id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(storage::Error::db("audit: study of a critical result"))?,
    };
    Ok(row.map_or_else(Found::default, |r| Found {
        study_uid: r.get(0),
        patient_id: r.get(1),
        issuer: r.get(2),
    }))
}
