//! The database handle: one sqlx `AnyPool` over SQLite or PostgreSQL, chosen by URL.
//!
//! Queries are runtime `sqlx::query` with `$n` placeholders, BIGINT/TEXT columns only, so the
//! same SQL runs on both backends (STACK-FACTS §5: the `Any` driver decodes ints, floats,
//! strings and blobs). SQLite allows one writer at a time and answers a second one with
//! SQLITE_BUSY when a read transaction tries to upgrade, so writes on SQLite are serialised
//! through an in-process lock; PostgreSQL needs no such lock.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};
use tokio::sync::{Mutex, MutexGuard};

use crate::Error;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A cloneable handle to the index database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the process-wide writer lock.
pub struct WriteTx<'a> {
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await.map_err(Error::db("commit"))
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}
impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Hide the password of a database URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Db {
    /// Connect to `url` (`sqlite:PATH` or `postgres://…`) and run the migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Config(format!(
                "unsupported database URL {}: use sqlite:PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        let url = match backend {
            // create the file on first start
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            _ => url.to_string(),
        };
        let opts: AnyConnectOptions = url.parse().map_err(|e| {
            Error::Config(format!("invalid database URL {}: {e}", redact_url(&url)))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            // while the database is away a request waits this long, then hears "unavailable"
            // (503, 0xA700, A-ASSOCIATE-RJ): shorter than a modality's 30 s ACSE timeout
            .acquire_timeout(Duration::from_secs(10))
            // A connection whose COMMIT failed (disk or database full) still counts itself
            // inside a transaction: the ROLLBACK on drop fails too, as SQLite has already
            // ended it. Pooled again, every later BEGIN on it failed ("begin_with at
            // non-zero transaction depth") until a restart. Such a connection is closed
            // instead (after ping lets a queued rollback finish), so writes recover as soon
            // as space is back.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("a database connection was left inside a failed transaction; closed");
                    }
                    Ok(clean)
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; synchronous=FULL makes a
                        // commit durable before C-STORE success is sent.
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=FULL").await?;
                        conn.execute("PRAGMA busy_timeout=30000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot open database {}: {e}. Check READHUB_DATABASE_URL and that the server is up.",
                    redact_url(&url)
                ))
            })?;
        let db = Db {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        };
        db.migrate().await?;
        db.optimize().await;
        Ok(db)
    }

    /// Refresh the query planner's statistics where the database needs it asked: SQLite
    /// plans without them (and then walks a 10^5-item queue where a partial index would
    /// answer at once). `PRAGMA optimize` analyses only what changed; run at start and
    /// periodically. PostgreSQL's autovacuum does this itself.
    pub async fn optimize(&self) {
        if self.backend == Backend::Sqlite {
            if let Err(e) = sqlx::query("PRAGMA optimize=0x10002").execute(&self.pool).await {
                tracing::warn!(error = %e, "PRAGMA optimize failed");
            }
        }
    }

    /// Apply every pending migration of this backend's tree.
    pub async fn migrate(&self) -> Result<(), Error> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| Error::Config(format!("database migration failed: {e}")))
    }

    /// Is the database answering, with every migration of this build applied? The error
    /// says which of the two is not so (`/readyz`).
    pub async fn check_ready(&self) -> Result<(), String> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        let applied: Vec<i64> = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| format!("the database does not answer: {e}"))?
            .iter()
            .map(|r| sqlx::Row::get(r, 0))
            .collect();
        let missing: Vec<i64> = migrator.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
        if !missing.is_empty() {
            return Err(format!("database migrations {missing:?} are not applied (start a node of this version to apply them)"));
        }
        Ok(())
    }

    /// How many connections the pool has open, and how many of them are idle (`/metrics`).
    pub fn pool_use(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begin a write transaction (serialised with other writers on SQLite).
    pub async fn begin_write(&self) -> Result<WriteTx<'_>, Error> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        // SQLite: take the write lock up front (BEGIN IMMEDIATE). A deferred transaction
        // that reads first and then writes cannot wait for another process's writer (the
        // busy handler is skipped to avoid deadlock) and fails with "database is locked",
        // e.g. when `readhub site add` runs beside a serving hub.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(Error::db("begin"))?;
        Ok(WriteTx { tx, _guard: guard })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, UTC: the one time unit of every table.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
