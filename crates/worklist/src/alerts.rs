//! Alerts: who is told about what (breaches, unrouted studies, quality rejections,
//! critical results and their escalation), and their acknowledgement.

use serde::Serialize;
use sqlx::Row;

use crate::scope::Scope;
use crate::{ItemId, PoolId, SiteId, UserId, Error, User, Worklist};

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
    /// an instance was refused because a UID of it belongs to another site (to the admins)
    UidCollision,
    /// an order has had no study for longer than `order_overdue_hours` (to the site)
    OrderOverdue,
    /// a study came with an order's accession number but another patient's ID (to the site)
    OrderMismatch,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SlaBreach => "sla_breach",
            AlertKind::Unrouted => "unrouted",
            AlertKind::QualityRejection => "quality_rejection",
            AlertKind::CriticalResult => "critical_result",
            AlertKind::CriticalUnacknowledged => "critical_unacknowledged",
            AlertKind::UidCollision => "uid_collision",
            AlertKind::OrderOverdue => "order_overdue",
            AlertKind::OrderMismatch => "order_mismatch",
        }
    }
}

/// An alert as its recipients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub pool_id: Option<PoolId>,
    pub site_id: Option<SiteId>,
    pub item_id: Option<ItemId>,
    pub message: String,
    pub created_at: i64,
    pub acknowledged_by: Option<UserId>,
    pub acknowledged_at: Option<i64>,
}

pub(crate) async fn raise_alert(
    tx: &mut storage::db::WriteTx<'_>,
    kind: AlertKind,
    pool_id: Option<PoolId>,
    site_id: Option<SiteId>,
    item_id: Option<ItemId>,
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

impl Worklist {
    /// The alerts a user should see: a supervisor their pool's, an admin all, a site's
    /// technicians and referrers their site's. Unacknowledged first, newest first.
    pub async fn alerts(&self, user: &User) -> Result<Vec<Alert>, Error> {
        // of a pool, only its supervisors are alerted
        let scope = match Scope::of(user) {
            Scope::Pool(_) if !user.supervisor => Scope::Nothing,
            s => s,
        };
        let (clause, key) = scope.sql("site_id", "pool_id", 1);
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
