//! The worklist's figures for the operators (`/metrics`): what waits where, read from the
//! database at each scrape, so every node reports the same cluster-wide values.

use sqlx::Row;

use crate::{Error, ItemState, Worklist};

/// The states an item waits in; reported and rejected items are history, not queue.
pub const OPEN_STATES: [ItemState; 4] = [ItemState::Receiving, ItemState::Ready, ItemState::Claimed, ItemState::Preliminary];

/// One scrape's worth of figures.
#[derive(Debug, Default)]
pub struct Gauges {
    /// (pool, state, items) for every pool and open state, zeros included
    pub queue: Vec<(String, ItemState, i64)>,
    /// (pool, open items past their turnaround deadline)
    pub breached_open: Vec<(String, i64)>,
    /// critical results (危急值) not yet acknowledged by their site
    pub critical_unacknowledged: i64,
    /// background work waiting: (job, items)
    pub backlog: Vec<(&'static str, i64)>,
}

impl Worklist {
    pub async fn gauges(&self) -> Result<Gauges, Error> {
        let pool = self.db.pool();
        let pools: Vec<(i64, String)> = sqlx::query("SELECT id, name FROM pools ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(Error::db("list pools"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let counted: Vec<(i64, String, i64, i64)> = sqlx::query(
            "SELECT pool_id, state, COUNT(*), SUM(CASE WHEN breached_at IS NULL THEN 0 ELSE 1 END) FROM worklist_items \
             WHERE state IN ($1, $2, $3, $4) GROUP BY pool_id, state",
        )
        .bind(OPEN_STATES[0].as_str())
        .bind(OPEN_STATES[1].as_str())
        .bind(OPEN_STATES[2].as_str())
        .bind(OPEN_STATES[3].as_str())
        .fetch_all(pool)
        .await
        .map_err(Error::db("count open items"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<Option<i64>, _>(3).unwrap_or(0)))
        .collect();
        let mut g = Gauges::default();
        for (id, name) in &pools {
            let mut breached = 0;
            for state in OPEN_STATES {
                let n = counted.iter().find(|(p, s, _, _)| p == id && s == state.as_str());
                g.queue.push((name.clone(), state, n.map_or(0, |c| c.2)));
                breached += n.map_or(0, |c| c.3);
            }
            g.breached_open.push((name.clone(), breached));
        }
        let count = |sql: &'static str| async move {
            sqlx::query(sql).fetch_one(pool).await.map(|r| r.get::<i64, _>(0)).map_err(Error::db("count backlog"))
        };
        g.critical_unacknowledged = count("SELECT COUNT(*) FROM critical_results WHERE acknowledged_at IS NULL").await?;
        g.backlog = vec![
            ("arrivals", count("SELECT COUNT(*) FROM arrivals").await?),
            ("webhooks", count("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL").await?),
            ("results", count("SELECT COUNT(*) FROM result_outbox WHERE delivered_at IS NULL").await?),
            ("renditions", count("SELECT COUNT(*) FROM instances WHERE renditions_at IS NULL").await?),
        ];
        Ok(g)
    }
}
