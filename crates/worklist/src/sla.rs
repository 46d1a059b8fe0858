//! The clocks of reading: turnaround targets and deadlines, and breaches (each recorded
//! once, alerting the pool's supervisors). The periodic tick also lets lapsed claims go
//! (crate::claims) and escalates unacknowledged critical results (crate::critical).
//!
//! Every time comes from the worklist's [`crate::Clock`], so tests move time by hand.

use sqlx::Row;

use crate::alerts::{raise_alert, AlertKind};
use crate::events::record_event;
use crate::{ItemId, PoolId, Error, EventKind, ItemState, Priority, Worklist};

/// What `sla_tick` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    pub breached: u64,
    pub leases_expired: u64,
    pub critical_escalated: u64,
}

impl Worklist {
    /// The turnaround target (ms) of a pool for a priority: the pool's own, else the default.
    pub async fn sla_target(&self, pool_id: PoolId, priority: Priority) -> Result<i64, Error> {
        let own: Option<i64> = sqlx::query("SELECT minutes FROM sla_targets WHERE pool_id = $1 AND priority = $2")
            .bind(pool_id)
            .bind(priority as i64)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select SLA target"))?
            .map(|r| r.get(0));
        Ok(match own {
            Some(minutes) => minutes * 60_000,
            None => self.config.sla_defaults[priority as usize].as_millis() as i64,
        })
    }

    /// Set a pool's turnaround target for a priority (applies to items arriving from now).
    pub async fn set_sla_target(&self, pool_id: PoolId, priority: Priority, minutes: i64) -> Result<(), Error> {
        if !(1..=30 * 24 * 60).contains(&minutes) {
            return Err(Error::Invalid(format!("a turnaround target of {minutes} minutes is out of range (1 minute to 30 days)")));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO sla_targets (pool_id, priority, minutes) VALUES ($1, $2, $3) \
             ON CONFLICT (pool_id, priority) DO UPDATE SET minutes = excluded.minutes",
        )
        .bind(pool_id)
        .bind(priority as i64)
        .bind(minutes)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("set SLA target"))?;
        tx.commit().await?;
        Ok(())
    }

    /// Record breaches (each once: event, alert to the pool's supervisors; the queue puts
    /// breached items first), return expired claims to the queue, escalate unacknowledged
    /// critical results. Run periodically by every process; conditional UPDATEs make
    /// concurrent ticks harmless.
    pub async fn sla_tick(&self) -> Result<TickOutcome, Error> {
        let now = self.now();
        Ok(TickOutcome {
            critical_escalated: self.escalate_critical(now).await?,
            breached: self.record_breaches(now).await?,
            leases_expired: self.expire_leases(now).await?,
        })
    }

    async fn record_breaches(&self, now: i64) -> Result<u64, Error> {
        // a read first, without SQLite's writer lock, so an idle tick costs no write
        let open = [ItemState::Receiving, ItemState::Ready, ItemState::Claimed];
        let due: Vec<(ItemId, PoolId, i64)> = sqlx::query(
            "SELECT id, pool_id, deadline_at FROM worklist_items WHERE state IN ($1, $2, $3) \
               AND breached_at IS NULL AND deadline_at IS NOT NULL AND deadline_at <= $4",
        )
        .bind(open[0].as_str())
        .bind(open[1].as_str())
        .bind(open[2].as_str())
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select due items"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut breached = 0;
        let mut tx = self.db.begin_write().await?;
        for (id, pool_id, deadline) in due {
            // not a state change: the item keeps its state and is marked
            let n = sqlx::query("UPDATE worklist_items SET breached_at = $1, updated_at = $2 WHERE id = $3 AND breached_at IS NULL")
                .bind(now)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("record breach"))?
                .rows_affected();
            if n == 1 {
                let late_min = (now - deadline) / 60_000;
                record_event(&mut tx, id, EventKind::Breached, None, now, &format!("deadline passed {late_min} min ago")).await?;
                let msg = format!("item {id} passed its turnaround deadline unreported / 超时未报告");
                raise_alert(&mut tx, AlertKind::SlaBreach, Some(pool_id), None, Some(id), &msg, now).await?;
                breached += 1;
            }
        }
        tx.commit().await?;
        Ok(breached)
    }
}
