//! readhub's reading worklist: the directory (pools, users, sessions), worklist items with
//! typed states, exclusive claims, and reports. It reads study metadata from `storage` and
//! owns the workflow tables (migrated by `storage::Db`, one migrator per backend).
//!
//! Every state change is one [`transition::Transition`]: a conditional UPDATE (`… WHERE
//! state IN (…)`), so exactly one of several concurrent claimants wins on SQLite and on
//! PostgreSQL alike, also across several readhub processes, recorded as an event with actor
//! and time. What arrives (C-STORE, STOW-RS) reaches the items through one consumer
//! ([`arrivals`]); who sees what is one rule ([`Scope`]).

pub mod alerts;
pub mod arrivals;
pub mod claims;
pub mod critical;
pub mod directory;
pub mod ecg;
pub mod events;
pub mod gauges;
pub mod hours;
pub mod items;
pub mod orders;
pub mod outbox;
pub mod passwords;
pub mod quiet;
pub mod rejection;
pub mod results;
pub mod reports;
pub mod routing;
pub mod scope;
pub mod sla;
pub mod stats;
pub mod supervision;
pub mod templates;
pub mod throttle;
mod transition;
pub mod types;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use storage::Db;

pub use readhub_types::{ItemId, PoolId, SeriesUid, SiteId, SopInstanceUid, StudyPk, StudyUid, UserId};
pub use scope::Scope;
pub use types::*;

/// Worklist settings (a section of readhub's config).
#[derive(Debug, Clone)]
pub struct Config {
    /// A study becomes ready to read this long after its last association ended (by
    /// modality; a site may set its own: see `quiet`).
    pub quiet: quiet::QuietPeriods,
    /// A study whose sender vanished without ending its association (crash, restart) is
    /// made ready anyway after this long without new instances.
    pub stall_horizon: Duration,
    /// How long a login session lasts at most.
    pub session_ttl: Duration,
    /// A login session unused this long has ended.
    pub session_idle: Duration,
    /// A claim is a lease: it returns to the queue unless renewed (or a draft saved)
    /// within this long.
    pub lease: Duration,
    /// Turnaround targets when a pool sets none: STAT, urgent, routine.
    pub sla_defaults: [Duration; 3],
    /// Local time's offset from UTC, hours, for routing rules by time of day (China: 8).
    pub utc_offset_hours: i32,
    /// A critical result unacknowledged this long escalates to the pool's supervisors.
    pub critical_ack: Duration,
    /// Fault injection for tests only: arrivals are not applied (the hand-over stalls), to
    /// prove that an acknowledged instance reaches the worklist after a crash.
    pub hold_arrivals: bool,
    /// Where the modality's priority flag (STAT / HIGH / ROUTINE …) is read: this attribute
    /// at the top level of the instance, or inside Request Attributes Sequence.
    pub priority_attribute: dicom_core::Tag,
    /// How long a user name stays locked after too many failed logins (see `throttle`).
    pub login_lock: Duration,
    /// An order with no study this long after its scheduled time is flagged to its site.
    pub order_overdue: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quiet: quiet::QuietPeriods::default(),
            stall_horizon: Duration::from_secs(600),
            session_ttl: Duration::from_secs(12 * 3600),
            session_idle: Duration::from_secs(2 * 3600),
            lease: Duration::from_secs(15 * 60),
            sla_defaults: [Duration::from_secs(30 * 60), Duration::from_secs(2 * 3600), Duration::from_secs(24 * 3600)],
            utc_offset_hours: 8,
            critical_ack: Duration::from_secs(15 * 60),
            hold_arrivals: false,
            priority_attribute: dicom_dictionary_std::tags::REQUESTED_PROCEDURE_PRIORITY,
            login_lock: Duration::from_secs(15 * 60),
            order_overdue: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where the worklist reads the time: the system clock in service, a hand-set one in tests
/// of SLA deadlines, breaches and lease expiry (no sleeping tests).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        storage::now_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(start_ms)))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The worklist service: a database handle, its settings and its clock.
#[derive(Clone, Debug)]
pub struct Worklist {
    pub db: Db,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
}

impl Worklist {
    pub fn new(db: Db, config: Config) -> Self {
        Worklist { db, config, clock: Arc::new(SystemClock) }
    }

    pub fn with_clock(db: Db, config: Config, clock: Arc<dyn Clock>) -> Self {
        Worklist { db, config, clock }
    }

    /// Now, by this worklist's clock (ms since the epoch).
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Worklist errors, mapped by the HTTP layer to 404 / 409 / 403 / 422 / 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// too many failed logins: try again after this long
    #[error("too many failed logins: this account is locked; try again in {} minutes / 登录失败次数过多, 账户已锁定", retry_after.as_secs().div_ceil(60))]
    Locked { retry_after: Duration },
}

impl Error {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Storage(storage::Error::Db { op, source })
    }
}
