//! readhub's storage: the blob store (object_store) and the index (sqlx over SQLite or
//! PostgreSQL). It knows DICOM identifiers and sites, but no workflow.
//!
//! The one way in is [`Storage::begin_instance`]: stream an instance's bytes through an
//! [`ingest::InstanceWriter`] and `finish` it; success means durable bytes and a committed
//! index row, and any error leaves nothing visible.

pub mod arrival;
pub mod attrs;
pub mod blob;
mod blob_key;
pub mod charset;
pub mod db;
pub use dicom_walk as header;
pub mod ingest;
pub mod group_commit;
pub mod lease;
mod local_write;
pub mod receive_buffer;
pub mod query;
pub mod renditions;
pub mod sites;
pub use readhub_types::sop;

pub use arrival::{Arrival, ArrivalKind, NodeName, Transfer, TransferId, Transfers};
pub use blob::{BlobKey, BlobStore};
pub use db::{now_ms, Backend, Db};
pub use ingest::{IngestError, IngestOutcome, InstanceWriter, StoredInstance};
pub use sites::Site;

/// Storage errors. Variants name what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database {op} failed: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("blob {key}: {source}")]
    Blob {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("blob {key}: {source}")]
    BlobIo {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// an indexed instance the shared store does not hold yet: it waits in the receive
    /// buffer of the node that received it (or that node is down)
    #[error("instance {key} is not in the shared object store yet (it waits in the receive buffer of the node that received it); try again shortly")]
    NotYetShared { key: String },
}

impl Error {
    /// `map_err` helper naming the database operation that failed.
    pub fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Db { op, source }
    }

    /// Whether this is a fault of the environment that passes by itself or by an operator's
    /// hand (database down or full, disk full, object store unreachable), not of the request
    /// or of readhub: the caller should hear "unavailable, try again" (503, 0xA700).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Db { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::InvalidSavePointStatement
                | sqlx::Error::BeginFailed => true,
                sqlx::Error::Database(e) => {
                    let code = e.code().unwrap_or_default();
                    // SQLite (primary codes): BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL,
                    // CANTOPEN; PostgreSQL: connection exceptions (08), insufficient
                    // resources (53: disk full, out of memory, too many connections),
                    // operator intervention (57P: shutdown, cannot connect now)
                    let sqlite = code.parse::<i32>().ok().map(|c| c & 0xFF);
                    matches!(sqlite, Some(5 | 6 | 7 | 8 | 10 | 13 | 14))
                        || code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("57P")
                }
                _ => false,
            },
            Error::Blob { source, .. } => !matches!(source, object_store::Error::NotFound { .. }),
            Error::BlobIo { .. } | Error::NotYetShared { .. } => true,
            Error::Config(_) | Error::NotFound(_) | Error::Invalid(_) => false,
        }
    }
}

/// Instances count as arriving for this long after their last bytes: the gap between the
/// slices of a CT pushed back to back is well under it.
pub const RECEIVING_WITHIN: std::time::Duration = std::time::Duration::from_millis(300);

/// Size limits applied to every incoming instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// An instance (data set) larger than this is refused.
    pub max_instance_bytes: u64,
    /// The attributes before the bulk data may not exceed this; it also caps what any single
    /// declared element length can make the parser allocate.
    pub max_header_bytes: usize,
    /// Sequences nested deeper than this are refused.
    pub max_sequence_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instance_bytes: 4 * 1024 * 1024 * 1024,
            max_header_bytes: 64 * 1024 * 1024,
            max_sequence_depth: header::DEFAULT_MAX_SEQUENCE_DEPTH,
        }
    }
}

/// The blob store and the index, together.
#[derive(Clone, Debug)]
pub struct Storage {
    pub db: Db,
    pub blobs: BlobStore,
    pub limits: Limits,
    /// when this process last received instance bytes (ms since the epoch): background
    /// work (rendering) waits while instances are arriving, so it does not take the CPU
    /// and the disk from the acknowledgements
    last_receipt: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// SQLite: the index rows of instances acknowledged together share one commit
    group_commit: Option<group_commit::GroupCommit<ingest::IndexRows>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({:?})", self.backend())
    }
}

impl Storage {
    /// Note that instance bytes arrived now.
    pub fn note_receipt(&self) {
        self.last_receipt.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago this process last received instance bytes.
    pub fn since_last_receipt(&self) -> std::time::Duration {
        let ms = now_ms() - self.last_receipt.load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Are instances arriving now (bytes within [`RECEIVING_WITHIN`])? Background work that
    /// would take the CPU and the disk from their acknowledgements (rendering, uploads from
    /// the receive buffer) waits while they are.
    pub fn receiving(&self) -> bool {
        self.since_last_receipt() < RECEIVING_WITHIN
    }

    pub async fn open(database_url: &str, object_store_url: &str, limits: Limits) -> Result<Self, Error> {
        let db = Db::connect(database_url).await?;
        let blobs = BlobStore::open(object_store_url)?;
        let group_commit = (db.backend() == Backend::Sqlite).then(|| group_commit::GroupCommit::start(db.clone()));
        Ok(Storage { db, blobs, limits, last_receipt: Default::default(), group_commit })
    }
}
