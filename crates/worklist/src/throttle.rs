//! The login throttle: the one place that decides whether a password may be tried. After
//! [`MAX_FAILURES`] failures for one user name within [`WINDOW`], the name is locked for
//! the configured lock time (every path: the login form, HTTP Basic); a client address
//! with many failures across names is slowed down. Kept in the database so that every
//! node of a cluster applies it.

use std::time::Duration;

use sqlx::Row;

use crate::{Error, Worklist};

/// Failures of one user name that lock it.
pub const MAX_FAILURES: i64 = 5;
/// Within this window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures from one client address (any names) after which each further attempt waits.
const CLIENT_FREE_FAILURES: i64 = 10;
/// The longest such wait.
const CLIENT_MAX_DELAY: Duration = Duration::from_secs(5);

impl Worklist {
    /// Before a password is checked: refuse while the name is locked; slow a client that
    /// has failed often.
    pub(crate) async fn before_password_check(&self, username: &str, client: &str) -> Result<(), Error> {
        let now = storage::now_ms();
        let until: Option<i64> = sqlx::query("SELECT until FROM login_locks WHERE username = $1")
            .bind(username)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select login lock"))?
            .map(|r| r.get(0));
        if let Some(until) = until.filter(|u| *u > now) {
            return Err(Error::Locked { retry_after: Duration::from_millis((until - now) as u64) });
        }
        let since = now - WINDOW.as_millis() as i64;
        let client_failures: i64 = sqlx::query("SELECT COUNT(*) FROM login_failures WHERE client = $1 AND at > $2")
            .bind(client)
            .bind(since)
            .fetch_one(self.db.pool())
            .await
            .map_err(Error::db("count client failures"))?
            .get(0);
        if client_failures > CLIENT_FREE_FAILURES {
            let delay = Duration::from_millis(250 * (client_failures - CLIENT_FREE_FAILURES) as u64).min(CLIENT_MAX_DELAY);
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// A password check failed: record it, and lock the name at the fifth failure within
    /// the window. Returns whether the name is now locked.
    pub(crate) async fn password_failed(&self, username: &str, client: &str) -> Result<bool, Error> {
        let now = storage::now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO login_failures (username, client, at) VALUES ($1, $2, $3)")
            .bind(username)
            .bind(client)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert login failure"))?;
        // forget what is older than the window, and locks that have passed: names are the
        // caller's to invent, so neither table may keep what no longer counts
        sqlx::query("DELETE FROM login_failures WHERE at <= $1")
            .bind(now - WINDOW.as_millis() as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("prune login failures"))?;
        sqlx::query("DELETE FROM login_locks WHERE until <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("prune login locks"))?;
        let failures: i64 = sqlx::query("SELECT COUNT(*) FROM login_failures WHERE username = $1")
            .bind(username)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("count login failures"))?
            .get(0);
        let locked = failures >= MAX_FAILURES;
        if locked {
            let until = now + self.config.login_lock.as_millis() as i64;
            sqlx::query(
                "INSERT INTO login_locks (username, until) VALUES ($1, $2) ON CONFLICT (username) DO UPDATE SET until = excluded.until",
            )
            .bind(username)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("lock login"))?;
            // the count starts again once the lock has passed
            sqlx::query("DELETE FROM login_failures WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("reset login failures"))?;
        }
        tx.commit().await?;
        if locked {
            tracing::warn!(user = %username, client, failures, lock_secs = self.config.login_lock.as_secs(), "login locked after repeated failures");
        }
        Ok(locked)
    }

    /// A password check succeeded: the name's failures are forgotten.
    pub(crate) async fn password_succeeded(&self, username: &str) -> Result<(), Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("reset login failures"))?;
        Ok(tx.commit().await?)
    }
}
