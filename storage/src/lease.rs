//! Cluster leases: a job that must run once per cluster (the SLA ticker, the webhook
//! outbox) runs on the node that holds its lease (pre-rendering is spread over the nodes by
//! claims instead: storage::renditions). Every node asks before each
//! round; the holder renews, the others are told no until the lease lapses (its holder died
//! or stopped), and then the first to ask takes it over. One upsert decides, so two nodes
//! never both hold a lease, on SQLite or PostgreSQL.

use std::time::Duration;

use crate::{Db, Error, NodeName};

/// A job that runs once per cluster. Its name is the lease's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterJob {
    /// ready promotion, auto-assignment, SLA breaches, claim lease expiry, critical
    /// escalation, overdue orders
    Ticker,
    /// the sites' webhooks
    Webhooks,
}

impl ClusterJob {
    pub const ALL: [ClusterJob; 2] = [ClusterJob::Ticker, ClusterJob::Webhooks];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterJob::Ticker => "ticker",
            ClusterJob::Webhooks => "webhooks",
        }
    }
}

/// How long a lease lasts without renewal: a node killed mid-work holds its jobs this long at
/// most. The holder renews on every round (each job's round is ≤ 1 s).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Hold (take or renew) `job`'s lease for `node` until `now + ttl`. True when `node` holds
/// it now; false when another node's lease is still running.
pub async fn hold(db: &Db, job: ClusterJob, node: &NodeName, now: i64, ttl: Duration) -> Result<bool, Error> {
    let until = now + ttl.as_millis() as i64;
    // the WHERE of the upsert's update: renew one's own, or take over a lapsed one
    let n = sqlx::query(
        "INSERT INTO cluster_leases (job, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE cluster_leases.holder = excluded.holder OR cluster_leases.expires_at < $4",
    )
    .bind(job.as_str())
    .bind(node.to_string())
    .bind(until)
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(Error::db("hold a cluster lease"))?
    .rows_affected();
    Ok(n == 1)
}

/// One node's hold on one job: asks the database only when the lease it holds is past half
/// its life (or it holds none), so the holder writes once per ~5 s per job, not every round
/// (on SQLite every write is a commit and an fsync). Clocks of the nodes are assumed in step
/// (NTP) to well under the lease's life.
pub struct Lease {
    db: Db,
    job: ClusterJob,
    node: NodeName,
    held_until: i64,
}

impl Lease {
    pub fn new(db: Db, job: ClusterJob, node: NodeName) -> Self {
        Lease { db, job, node, held_until: 0 }
    }

    /// Does this node hold the job now? A database error is "no" (and logged): a job never
    /// runs on a node that cannot prove its lease.
    pub async fn held(&mut self, now: i64) -> bool {
        if self.held_until - now > LEASE_TTL.as_millis() as i64 / 2 {
            return true;
        }
        match hold(&self.db, self.job, &self.node, now, LEASE_TTL).await {
            Ok(true) => {
                if self.held_until <= now {
                    tracing::info!(job = self.job.as_str(), node = %self.node, "this node now runs the job for the cluster");
                }
                self.held_until = now + LEASE_TTL.as_millis() as i64;
                true
            }
            Ok(false) => {
                self.held_until = 0;
                false
            }
            Err(e) => {
                tracing::warn!(job = self.job.as_str(), error = %e, "cannot hold the job's cluster lease; not running it");
                self.held_until = 0;
                false
            }
        }
    }
}

/// Let go of `node`'s leases (a clean stop: another node takes the jobs at once), and of its
/// heartbeat (it ended its transfers itself).
pub async fn release_all(db: &Db, node: &NodeName) -> Result<(), Error> {
    sqlx::query("DELETE FROM cluster_leases WHERE holder = $1")
        .bind(node.to_string())
        .execute(db.pool())
        .await
        .map_err(Error::db("release cluster leases"))?;
    sqlx::query("DELETE FROM node_heartbeats WHERE node = $1")
        .bind(node.to_string())
        .execute(db.pool())
        .await
        .map_err(Error::db("remove the node's heartbeat"))?;
    Ok(())
}

/// `node` is alive at `now` (every node, every few seconds).
pub async fn heartbeat(db: &Db, node: &NodeName, now: i64) -> Result<(), Error> {
    sqlx::query("INSERT INTO node_heartbeats (node, seen_at) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at")
        .bind(node.to_string())
        .bind(now)
        .execute(db.pool())
        .await
        .map_err(Error::db("write the node's heartbeat"))?;
    Ok(())
}

/// The nodes whose last heartbeat is older than `timeout` at `now`: they died without
/// stopping (a clean stop removes the row).
pub async fn lapsed_nodes(db: &Db, now: i64, timeout: Duration) -> Result<Vec<NodeName>, Error> {
    use sqlx::Row;
    let rows = sqlx::query("SELECT node FROM node_heartbeats WHERE seen_at < $1 ORDER BY node")
        .bind(now - timeout.as_millis() as i64)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("list lapsed nodes"))?;
    Ok(rows.iter().map(|r| NodeName::new(r.get::<String, _>(0))).collect())
}

/// Forget a lapsed node once its transfers are ended — unless it came back meanwhile.
pub async fn forget_node(db: &Db, node: &NodeName, now: i64, timeout: Duration) -> Result<(), Error> {
    sqlx::query("DELETE FROM node_heartbeats WHERE node = $1 AND seen_at < $2")
        .bind(node.to_string())
        .bind(now - timeout.as_millis() as i64)
        .execute(db.pool())
        .await
        .map_err(Error::db("forget a lapsed node"))?;
    Ok(())
}

/// Who holds which job's lease, and until when (the operators' view, `/metrics`).
pub async fn holders(db: &Db) -> Result<Vec<(String, String, i64)>, Error> {
    use sqlx::Row;
    let rows = sqlx::query("SELECT job, holder, expires_at FROM cluster_leases ORDER BY job")
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("list cluster leases"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_renewal_and_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/i.db", dir.path().display())).await.unwrap();
        let (a, b) = (NodeName::new("a"), NodeName::new("b"));
        let ttl = Duration::from_secs(10);
        assert!(hold(&db, ClusterJob::Ticker, &a, 1_000, ttl).await.unwrap());
        assert!(!hold(&db, ClusterJob::Ticker, &b, 2_000, ttl).await.unwrap(), "b must wait while a's lease runs");
        assert!(hold(&db, ClusterJob::Webhooks, &b, 2_000, ttl).await.unwrap(), "leases are per job");
        assert!(hold(&db, ClusterJob::Ticker, &a, 5_000, ttl).await.unwrap(), "a renews");
        assert!(!hold(&db, ClusterJob::Ticker, &b, 14_000, ttl).await.unwrap(), "renewed until 15 000");
        assert!(hold(&db, ClusterJob::Ticker, &b, 15_001, ttl).await.unwrap(), "lapsed: b takes over");
        assert!(!hold(&db, ClusterJob::Ticker, &a, 15_002, ttl).await.unwrap(), "and a no longer holds it");
        release_all(&db, &b).await.unwrap();
        assert!(hold(&db, ClusterJob::Ticker, &a, 15_003, ttl).await.unwrap(), "released: taken at once");
        // the keeper asks again only past half the lease's life
        sqlx::query("DELETE FROM cluster_leases").execute(db.pool()).await.unwrap();
        let mut keeper = Lease::new(db.clone(), ClusterJob::Webhooks, b.clone());
        assert!(keeper.held(100_000).await);
        assert!(!hold(&db, ClusterJob::Webhooks, &a, 100_001, ttl).await.unwrap());
        sqlx::query("DELETE FROM cluster_leases").execute(db.pool()).await.unwrap();
        assert!(keeper.held(101_000).await, "within half its life: no database round");
        assert!(keeper.held(106_000).await, "past half: renewed (taken again)");
        assert!(!hold(&db, ClusterJob::Webhooks, &a, 106_001, ttl).await.unwrap());
    }

    #[tokio::test]
    async fn a_node_that_stops_beating_is_lapsed_until_forgotten_or_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/i.db", dir.path().display())).await.unwrap();
        let (a, b, c) = (NodeName::new("a"), NodeName::new("b"), NodeName::new("c"));
        let timeout = Duration::from_secs(30);
        heartbeat(&db, &a, 1_000).await.unwrap();
        heartbeat(&db, &b, 1_000).await.unwrap();
        heartbeat(&db, &c, 1_000).await.unwrap();
        heartbeat(&db, &a, 25_000).await.unwrap();
        assert!(lapsed_nodes(&db, 30_000, timeout).await.unwrap().is_empty());
        assert_eq!(lapsed_nodes(&db, 31_001, timeout).await.unwrap(), [b.clone(), c.clone()]);
        release_all(&db, &c).await.unwrap();
        assert_eq!(lapsed_nodes(&db, 31_001, timeout).await.unwrap(), [b.clone()], "a clean stop is not a death");
        heartbeat(&db, &b, 31_500).await.unwrap();
        forget_node(&db, &b, 31_600, timeout).await.unwrap();
        assert_eq!(lapsed_nodes(&db, 61_501, timeout).await.unwrap(), [a.clone(), b.clone()], "back before it was forgotten: kept");
        forget_node(&db, &b, 61_600, timeout).await.unwrap();
        assert_eq!(lapsed_nodes(&db, 61_700, timeout).await.unwrap(), [a]);
    }
}
