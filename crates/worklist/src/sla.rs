//! The clocks of reading: turnaround targets and deadlines, breaches and their escalation,
//! claim leases; the supervisor's levers (reassign, re-route, priority); quality
//! rejections; and the alerts that tell people about all of it.
//!
//! Every time comes from the worklist's [`crate::Clock`], so tests move time by hand.

use serde::Serialize;
use sqlx::Row;

use crate::items::{insert_event, ItemView};
use crate::{Error, EventKind, ItemState, Priority, RejectReason, Role, User, Worklist};

/// Why somebody is alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// an item passed its turnaround deadline unreported (to the pool's supervisors)
    SlaBreach,
    /// no routing rule matched; the study went to the fallback pool (to its supervisors)
    Unrouted,
    /// a study was returned to its site for a retake (to the site)
    QualityRejection,
    /// a critical finding (to the site, at once)
    CriticalResult,
    /// a critical result was not acknowledged in time (to the pool's supervisors)
    CriticalUnacknowledged,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SlaBreach => "sla_breach",
            AlertKind::Unrouted => "unrouted",
            AlertKind::QualityRejection => "quality_rejection",
            AlertKind::CriticalResult => "critical_result",
            AlertKind::CriticalUnacknowledged => "critical_unacknowledged",
        }
    }
}

/// An alert as its recipients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub pool_id: Option<i64>,
    pub site_id: Option<i64>,
    pub item_id: Option<i64>,
    pub message: String,
    pub created_at: i64,
    pub acknowledged_by: Option<i64>,
    pub acknowledged_at: Option<i64>,
}

pub(crate) async fn insert_alert(
    tx: &mut storage::db::WriteTx<'_>,
    kind: AlertKind,
    pool_id: Option<i64>,
    site_id: Option<i64>,
    item_id: Option<i64>,
    message: &str,
    at: i64,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO alerts (kind, pool_id, site_id, item_id, message, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(kind.as_str())
        .bind(pool_id)
        .bind(site_id)
        .bind(item_id)
        .bind(message)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("insert alert"))?;
    Ok(())
}

/// Items an auto-assigning pool pushes to a reader at a time.
const AUTO_ASSIGN_DEPTH: i64 = 1;

/// What `sla_tick` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    pub breached: u64,
    pub leases_expired: u64,
    pub critical_escalated: u64,
}

impl Worklist {
    /// The turnaround target (ms) of a pool for a priority: the pool's own, else the default.
    pub async fn sla_target(&self, pool_id: i64, priority: Priority) -> Result<i64, Error> {
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
    pub async fn set_sla_target(&self, pool_id: i64, priority: Priority, minutes: i64) -> Result<(), Error> {
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
    /// breached items first) and return expired claims to the queue. Run periodically by
    /// every process; conditional UPDATEs make concurrent ticks harmless.
    pub async fn sla_tick(&self) -> Result<TickOutcome, Error> {
        let now = self.now();
        let mut out = TickOutcome { critical_escalated: self.escalate_critical(now).await?, ..Default::default() };
        // reads first, without SQLite's writer lock, so an idle tick costs no write
        let due: Vec<(i64, i64, i64)> = sqlx::query(
            "SELECT id, pool_id, deadline_at FROM worklist_items WHERE state IN ('receiving', 'ready', 'claimed') \
               AND breached_at IS NULL AND deadline_at IS NOT NULL AND deadline_at <= $1",
        )
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select due items"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        let expired: Vec<(i64, Option<i64>)> = sqlx::query(
            "SELECT id, claimed_by FROM worklist_items WHERE state = 'claimed' AND lease_expires_at IS NOT NULL \
               AND lease_expires_at <= $1",
        )
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select expired leases"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        if due.is_empty() && expired.is_empty() {
            return Ok(out);
        }
        let mut tx = self.db.begin_write().await?;
        for (id, pool_id, deadline) in due {
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
                insert_event(&mut tx, id, EventKind::Breached, None, now, &format!("deadline passed {late_min} min ago")).await?;
                let msg = format!("item {id} passed its turnaround deadline unreported / 超时未报告");
                insert_alert(&mut tx, AlertKind::SlaBreach, Some(pool_id), None, Some(id), &msg, now).await?;
                out.breached += 1;
            }
        }
        for (id, reader) in expired {
            let n = sqlx::query(
                "UPDATE worklist_items SET state = 'ready', claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL, \
                   updated_at = $1 WHERE id = $2 AND state = 'claimed' AND lease_expires_at <= $3",
            )
            .bind(now)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("expire lease"))?
            .rows_affected();
            if n == 1 {
                let detail = reader.map(|r| format!("claim of user {r} lapsed")).unwrap_or_default();
                insert_event(&mut tx, id, EventKind::LeaseExpired, None, now, &detail).await?;
                out.leases_expired += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Extend the claimant's lease (the viewer does this while the reader works; saving a
    /// draft does it too).
    pub async fn renew(&self, id: i64, user: &User) -> Result<ItemView, Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE worklist_items SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND state = 'claimed' AND claimed_by = $4",
        )
        .bind(now + self.config.lease.as_millis() as i64)
        .bind(now)
        .bind(id)
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("renew lease"))?
        .rows_affected();
        if n != 1 {
            return Err(Error::Conflict("the item is not claimed by you (the claim may have lapsed) / 您未认领此项".into()));
        }
        insert_event(&mut tx, id, EventKind::Renewed, Some(user.id), now, "").await?;
        tx.commit().await?;
        self.item(id).await
    }

    /// Claim the first item of the reader's queue that is ready (items with another
    /// preferred reader are left for them). None when nothing is ready.
    pub async fn claim_next(&self, user: &User) -> Result<Option<ItemView>, Error> {
        let Some(pool) = user.pool_id.filter(|_| user.role == Role::Reader) else {
            return Err(Error::Forbidden("only a reader claims from a pool's queue / 仅阅片医生可认领".into()));
        };
        // Several readers asking at once race for the same first items; a lost race means
        // another reader progressed, so keep going (bounded) rather than answer "nothing".
        for _ in 0..64 {
            // breached items first (few, if any), then the rest in index order: priority,
            // deadline (worklist_items_next), so a long queue is not sorted per claim
            let mut candidates = Vec::new();
            // is anything breached? (a probe the planner answers from the partial index)
            let any_breached = sqlx::query(
                "SELECT id FROM worklist_items WHERE breached_at IS NOT NULL AND pool_id = $1 AND state = 'ready' LIMIT 1",
            )
            .bind(pool)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select breached items"))?
            .is_some();
            for breached in [true, false] {
                if breached && !any_breached {
                    continue;
                }
                // a reader qualified for some modalities only looks further down the queue
                let limit = if user.modalities.is_empty() { 10 } else { 100 };
                let sql = format!(
                    "SELECT w.id, st.modalities FROM worklist_items w JOIN studies st ON st.id = w.study_id \
                     WHERE w.pool_id = $1 AND w.state = 'ready' AND w.breached_at IS {} NULL \
                       AND (w.preferred_reader IS NULL OR w.preferred_reader = $2) \
                     ORDER BY w.priority, w.deadline_at, w.id LIMIT {limit}",
                    if breached { "NOT" } else { "" }
                );
                candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(pool)
                    .bind(user.id)
                    .fetch_all(self.db.pool())
                    .await
                    .map_err(Error::db("select next item"))?
                    .iter()
                    .filter(|r| user.reads(&r.get::<String, _>(1)))
                    .map(|r| r.get(0))
                    .collect::<Vec<i64>>();
                if !candidates.is_empty() {
                    break;
                }
            }
            if candidates.is_empty() {
                return Ok(None);
            }
            for id in candidates {
                match self.claim(id, user).await {
                    Ok(item) => return Ok(Some(item)),
                    Err(Error::Conflict(_)) => continue, // another reader was quicker
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// Push ready items of auto-assigning pools to their least-loaded on-duty qualified
    /// readers: a reader gets the next item when they hold none (one at a time, as a
    /// reading room's dispatcher would). Returns how many were assigned.
    pub async fn auto_assign_tick(&self) -> Result<u64, Error> {
        let pools: Vec<i64> = sqlx::query("SELECT id FROM pools WHERE auto_assign = 1")
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select auto-assign pools"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let now = self.now();
        let mut assigned = 0;
        for pool in pools {
            // readers of the pool on duty now, with how many items they hold
            let mut readers: Vec<(User, i64)> = Vec::new();
            let ids: Vec<i64> = sqlx::query("SELECT id FROM users WHERE role = 'reader' AND pool_id = $1 AND disabled = 0")
                .bind(pool)
                .fetch_all(self.db.pool())
                .await
                .map_err(Error::db("select readers"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in ids {
                let u = self.user(id).await?;
                if !u.on_duty(now, self.config.utc_offset_hours) {
                    continue;
                }
                let load: i64 = sqlx::query("SELECT COUNT(*) FROM worklist_items WHERE claimed_by = $1 AND state = 'claimed'")
                    .bind(id)
                    .fetch_one(self.db.pool())
                    .await
                    .map_err(Error::db("count load"))?
                    .get(0);
                readers.push((u, load));
            }
            if !readers.iter().any(|(_, load)| *load < AUTO_ASSIGN_DEPTH) {
                continue;
            }
            let items: Vec<(i64, String, Option<i64>)> = sqlx::query(
                "SELECT w.id, st.modalities, w.preferred_reader FROM worklist_items w JOIN studies st ON st.id = w.study_id \
                 WHERE w.pool_id = $1 AND w.state = 'ready' \
                 ORDER BY CASE WHEN w.breached_at IS NULL THEN 1 ELSE 0 END, w.priority, w.deadline_at, w.id LIMIT 50",
            )
            .bind(pool)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select ready items"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
            for (item, modalities, preferred) in items {
                let Some(pick) = readers
                    .iter_mut()
                    .filter(|(u, load)| *load < AUTO_ASSIGN_DEPTH && u.reads(&modalities) && preferred.is_none_or(|p| p == u.id))
                    .min_by_key(|(u, load)| (*load, u.id))
                else {
                    continue;
                };
                let mut tx = self.db.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE worklist_items SET state = 'claimed', claimed_by = $1, claimed_at = $2, lease_expires_at = $3, \
                       updated_at = $4 WHERE id = $5 AND state = 'ready'",
                )
                .bind(pick.0.id)
                .bind(now)
                .bind(now + self.config.lease.as_millis() as i64)
                .bind(now)
                .bind(item)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("auto-assign"))?
                .rows_affected();
                if n == 1 {
                    let detail = format!("auto-assigned to {} (held {})", pick.0.username, pick.1);
                    insert_event(&mut tx, item, EventKind::Reassigned, None, now, &detail).await?;
                    pick.1 += 1;
                    assigned += 1;
                }
                tx.commit().await?;
            }
        }
        Ok(assigned)
    }

    fn may_supervise(user: &User, pool_id: i64) -> bool {
        user.role == Role::Admin || (user.role == Role::Reader && user.supervisor && user.pool_id == Some(pool_id))
    }

    /// A supervisor (or admin) gives an unreported item to a reader of its pool.
    pub async fn reassign(&self, id: i64, to: i64, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        if !Self::may_supervise(by, item.pool_id) {
            return Err(Error::Forbidden("only the pool's supervisor or an admin can reassign / 仅组长或管理员可改派".into()));
        }
        let reader = self.user(to).await?;
        if reader.role != Role::Reader || reader.pool_id != Some(item.pool_id) {
            return Err(Error::Invalid(format!("{} is not a reader of this item's pool", reader.username)));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE worklist_items SET state = 'claimed', claimed_by = $1, claimed_at = $2, lease_expires_at = $3, \
               updated_at = $4 WHERE id = $5 AND state IN ('ready', 'claimed')",
        )
        .bind(to)
        .bind(now)
        .bind(now + self.config.lease.as_millis() as i64)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("reassign"))?
        .rows_affected();
        if n != 1 {
            return Err(Error::Conflict(format!("item is {}: only ready or claimed items can be reassigned", item.state)));
        }
        let detail = format!("to user {to} (was {})", item.claimed_by.map_or("unclaimed".into(), |u| format!("user {u}")));
        insert_event(&mut tx, id, EventKind::Reassigned, Some(by.id), now, &detail).await?;
        tx.commit().await?;
        self.item(id).await
    }

    /// An admin (or the source pool's supervisor) sends an unreported item to another pool.
    pub async fn reroute(&self, id: i64, pool_name: &str, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        if !Self::may_supervise(by, item.pool_id) {
            return Err(Error::Forbidden("only the pool's supervisor or an admin can re-route / 仅组长或管理员可改派".into()));
        }
        let pool = self.pool_by_name(pool_name).await?;
        let now = self.now();
        let priority = item.priority;
        let deadline = item.arrived_at + self.sla_target(pool.id, priority).await?;
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE worklist_items SET pool_id = $1, routed_by = $2, deadline_at = $3, preferred_reader = NULL, \
               state = CASE WHEN state = 'claimed' THEN 'ready' ELSE state END, claimed_by = NULL, claimed_at = NULL, \
               lease_expires_at = NULL, updated_at = $4 \
             WHERE id = $5 AND state IN ('receiving', 'ready', 'claimed')",
        )
        .bind(pool.id)
        .bind(format!("manual:{}", by.username))
        .bind(deadline)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("re-route"))?
        .rows_affected();
        if n != 1 {
            return Err(Error::Conflict(format!("item is {}: only unreported items can be re-routed", item.state)));
        }
        insert_event(&mut tx, id, EventKind::Rerouted, Some(by.id), now, &format!("pool={} by={}", pool.name, by.username)).await?;
        tx.commit().await?;
        self.item(id).await
    }

    /// Change an item's priority: the site's technician flags STAT at push time, a reader
    /// or admin escalates. The deadline follows from the arrival time and the new target.
    pub async fn set_priority(&self, id: i64, priority: Priority, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        let allowed = match by.role {
            Role::Admin => true,
            Role::Technician => by.site_id == Some(item.site_id),
            Role::Reader => by.pool_id == Some(item.pool_id),
            Role::Referrer => false,
        };
        if !allowed {
            return Err(Error::Forbidden("you cannot change this item's priority / 无权修改优先级".into()));
        }
        if matches!(item.state, ItemState::Reported | ItemState::Rejected) {
            return Err(Error::Conflict(format!("item is {}: its priority no longer matters", item.state)));
        }
        let deadline = item.arrived_at + self.sla_target(item.pool_id, priority).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE worklist_items SET priority = $1, deadline_at = $2, updated_at = $3 WHERE id = $4")
            .bind(priority as i64)
            .bind(deadline)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("set priority"))?;
        let detail = format!("{:?} -> {:?}", item.priority, priority).to_lowercase();
        insert_event(&mut tx, id, EventKind::PriorityChanged, Some(by.id), now, &detail).await?;
        tx.commit().await?;
        self.item(id).await
    }

    /// The reader who holds the claim returns the study to its site for a retake. The site
    /// sees the reason; new images for the study (or a retake under the same accession)
    /// put it back in the queue.
    pub async fn reject(&self, id: i64, reason: RejectReason, note: &str, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        let allowed = by.role == Role::Admin || (by.role == Role::Reader && item.claimed_by == Some(by.id));
        if !allowed {
            return Err(Error::Forbidden("claim the item before returning it for a retake / 请先认领再退回".into()));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE worklist_items SET state = 'rejected', rejected_reason = $1, rejected_note = $2, rejected_at = $3, \
               claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL, updated_at = $4 \
             WHERE id = $5 AND state IN ('claimed', 'ready')",
        )
        .bind(reason.as_str())
        .bind(note)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("reject"))?
        .rows_affected();
        if n != 1 {
            return Err(Error::Conflict(format!("item is {}: only an unreported item can be returned", item.state)));
        }
        insert_event(&mut tx, id, EventKind::Rejected, Some(by.id), now, &format!("{}: {note}", reason.as_str())).await?;
        let msg = format!(
            "study {} ({}) returned for a retake: {} {} / 图像质量不合格，请重新检查",
            item.accession_number.as_deref().unwrap_or(&item.study_instance_uid),
            item.patient_id,
            reason.as_str(),
            note
        );
        insert_alert(&mut tx, AlertKind::QualityRejection, None, Some(item.site_id), Some(id), &msg, now).await?;
        let body = serde_json::json!({
            "event": "quality_rejection",
            "item_id": id,
            "site": item.site_name,
            "patient_id": item.patient_id,
            "accession_number": item.accession_number,
            "study_instance_uid": item.study_instance_uid,
            "reason": reason.as_str(),
            "note": note,
            "at": now,
        });
        crate::critical::enqueue_webhook(&mut tx, item.site_id, &body, now).await?;
        tx.commit().await?;
        self.item(id).await
    }

    /// The alerts a user should see: a supervisor their pool's, an admin all, a site's
    /// technicians and referrers their site's. Unacknowledged first, newest first.
    pub async fn alerts(&self, user: &User) -> Result<Vec<Alert>, Error> {
        let (clause, key) = match user.role {
            Role::Admin => ("1 = 1 OR $1 = 0", 0),
            Role::Reader if user.supervisor => ("pool_id = $1", user.pool_id.unwrap_or(-1)),
            Role::Reader => ("1 = 0 AND $1 = 0", 0),
            Role::Technician | Role::Referrer => ("site_id = $1", user.site_id.unwrap_or(-1)),
        };
        let sql = format!(
            "SELECT id, kind, pool_id, site_id, item_id, message, created_at, acknowledged_by, acknowledged_at FROM alerts \
             WHERE {clause} ORDER BY CASE WHEN acknowledged_at IS NULL THEN 0 ELSE 1 END, id DESC LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list alerts"))?;
        Ok(rows
            .iter()
            .map(|r| Alert {
                id: r.get("id"),
                kind: r.get("kind"),
                pool_id: r.get("pool_id"),
                site_id: r.get("site_id"),
                item_id: r.get("item_id"),
                message: r.get("message"),
                created_at: r.get("created_at"),
                acknowledged_by: r.get("acknowledged_by"),
                acknowledged_at: r.get("acknowledged_at"),
            })
            .collect())
    }

    /// Acknowledge an alert the user can see (once; the first acknowledgement stands).
    pub async fn acknowledge_alert(&self, alert_id: i64, user: &User) -> Result<Alert, Error> {
        let visible = self.alerts(user).await?;
        if !visible.iter().any(|a| a.id == alert_id) {
            return Err(Error::NotFound(format!("alert {alert_id}")));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE alerts SET acknowledged_by = $1, acknowledged_at = $2 WHERE id = $3 AND acknowledged_at IS NULL")
            .bind(user.id)
            .bind(now)
            .bind(alert_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("acknowledge alert"))?;
        tx.commit().await?;
        self.alerts(user)
            .await?
            .into_iter()
            .find(|a| a.id == alert_id)
            .ok_or_else(|| Error::NotFound(format!("alert {alert_id}")))
    }
}
