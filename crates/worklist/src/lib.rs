//! readhub's reading worklist: the directory (pools, users, sessions), worklist items with
//! typed states, exclusive claims, and reports. It reads study metadata from `storage` and
//! owns the workflow tables (migrated by `storage::Db`, one migrator per backend).
//!
//! Every state change is one conditional UPDATE (`… WHERE state = 'ready'`), so exactly one
//! of several concurrent claimants wins on SQLite and on PostgreSQL alike, also across
//! several readhub processes, and is recorded as an event with actor and time.

pub mod directory;
pub mod items;
pub mod reports;
pub mod types;

use std::time::Duration;

use storage::Db;

pub use types::*;

/// Worklist settings (a section of readhub's config).
#[derive(Debug, Clone)]
pub struct Config {
    /// A study becomes ready to read this long after its last association ended.
    pub quiet_period: Duration,
    /// A study whose sender vanished without ending its association (crash, restart) is
    /// made ready anyway after this long without new instances.
    pub stall_horizon: Duration,
    /// How long a login session lasts.
    pub session_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quiet_period: Duration::from_secs(10),
            stall_horizon: Duration::from_secs(600),
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// The worklist service: a database handle and its settings.
#[derive(Clone, Debug)]
pub struct Worklist {
    pub db: Db,
    pub config: Config,
}

impl Worklist {
    pub fn new(db: Db, config: Config) -> Self {
        Worklist { db, config }
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
}

impl Error {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Storage(storage::Error::Db { op, source })
    }
}
