//! Critical results (危急值): a reader flags a finding; the referring site is notified at
//! once (an in-app alert, and its webhook through a durable outbox); a referrer of the site
//! acknowledges; unacknowledged after `critical_ack` the pool's supervisors are alerted.
//! The whole chain (flagged, notified, acknowledged, escalated: who and when) is kept.

use serde::Serialize;
use sqlx::Row;

use crate::alerts::{raise_alert, AlertKind};
use crate::events::record_event;
use crate::outbox::enqueue_webhook;
use crate::scope::Scope;
use crate::{ItemId, PoolId, SiteId, StudyUid, UserId, Error, EventKind, Role, User, Worklist};

/// One critical result and its chain.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalResult {
    pub id: i64,
    pub item_id: ItemId,
    pub site_id: SiteId,
    pub pool_id: PoolId,
    pub finding: String,
    pub flagged_by: UserId,
    pub flagged_by_name: String,
    pub flagged_at: i64,
    pub notified_at: Option<i64>,
    pub acknowledged_by: Option<UserId>,
    pub acknowledged_by_name: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub escalated_at: Option<i64>,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub accession_number: Option<String>,
    pub study_instance_uid: StudyUid,
}

const SELECT: &str = "SELECT c.id, c.item_id, c.site_id, c.pool_id, c.finding, c.flagged_by, f.display_name AS flagged_by_name, \
       c.flagged_at, c.notified_at, c.acknowledged_by, a.display_name AS acknowledged_by_name, c.acknowledged_at, \
       c.escalated_at, p.patient_id, p.name AS patient_name, st.accession_number, st.study_uid \
     FROM critical_results c \
     JOIN worklist_items w ON w.id = c.item_id \
     JOIN studies st ON st.id = w.study_id \
     JOIN patients p ON p.id = st.patient_id \
     JOIN users f ON f.id = c.flagged_by \
     LEFT JOIN users a ON a.id = c.acknowledged_by ";

fn from_row(r: &sqlx::any::AnyRow) -> CriticalResult {
    CriticalResult {
        id: r.get("id"),
        item_id: r.get("item_id"),
        site_id: r.get("site_id"),
        pool_id: r.get("pool_id"),
        finding: r.get("finding"),
        flagged_by: r.get("flagged_by"),
        flagged_by_name: r.get("flagged_by_name"),
        flagged_at: r.get("flagged_at"),
        notified_at: r.get("notified_at"),
        acknowledged_by: r.get("acknowledged_by"),
        acknowledged_by_name: r.get("acknowledged_by_name"),
        acknowledged_at: r.get("acknowledged_at"),
        escalated_at: r.get("escalated_at"),
        patient_id: r.get("patient_id"),
        patient_name: r.get("patient_name"),
        accession_number: r.get("accession_number"),
        study_instance_uid: r.get("study_uid"),
    }
}

impl Worklist {
    /// A reader of the item's pool flags a critical finding. The site is notified at once.
    pub async fn flag_critical(&self, item_id: ItemId, user: &User, finding: &str) -> Result<CriticalResult, Error> {
        let item = self.item(item_id).await?;
        if user.role != Role::Reader || !Scope::of(user).sees(item.site_id, Some(item.pool_id)) {
            return Err(Error::Forbidden("only a reader of this item's pool flags a critical result / 仅本组医生可报危急值".into()));
        }
        if finding.trim().is_empty() {
            return Err(Error::Invalid("describe the critical finding / 请填写危急值内容".into()));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO critical_results (item_id, site_id, pool_id, finding, flagged_by, flagged_at, notified_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(item_id)
        .bind(item.site_id)
        .bind(item.pool_id)
        .bind(finding.trim())
        .bind(user.id)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("insert critical result"))?
        .get(0);
        record_event(&mut tx, item_id, EventKind::CriticalFlagged, Some(user.id), now, finding.trim()).await?;
        let msg = format!(
            "危急值 CRITICAL RESULT: patient {} {} ({}): {} — please acknowledge / 请立即确认",
            item.patient_id,
            item.patient_name.as_deref().unwrap_or(""),
            item.accession_number.as_deref().unwrap_or(&item.study_instance_uid),
            finding.trim()
        );
        raise_alert(&mut tx, AlertKind::CriticalResult, None, Some(item.site_id), Some(item_id), &msg, now).await?;
        let body = serde_json::json!({
            "event": "critical_result",
            "critical_result_id": id,
            "site": item.site_name,
            "patient_id": item.patient_id,
            "patient_name": item.patient_name,
            "accession_number": item.accession_number,
            "study_instance_uid": item.study_instance_uid,
            "finding": finding.trim(),
            "flagged_by": user.display_name,
            "flagged_at": now,
            "acknowledge": format!("/api/critical/{id}/ack"),
        });
        enqueue_webhook(&mut tx, item.site_id, &body, now).await?;
        record_event(&mut tx, item_id, EventKind::CriticalNotified, None, now, "in-app alert; site webhook queued if configured").await?;
        tx.commit().await?;
        self.critical_result(id).await
    }

    pub async fn critical_result(&self, id: i64) -> Result<CriticalResult, Error> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE c.id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select critical result"))?
            .ok_or_else(|| Error::NotFound(format!("critical result {id}")))?;
        Ok(from_row(&r))
    }

    /// Critical results a user may see: the site's (referrers, technicians), the pool's
    /// (readers), all (admins). Unacknowledged first.
    pub async fn critical_results(&self, user: &User) -> Result<Vec<CriticalResult>, Error> {
        let (clause, key) = Scope::of(user).sql("c.site_id", "c.pool_id", 1);
        let sql = format!("{SELECT} WHERE {clause} ORDER BY CASE WHEN c.acknowledged_at IS NULL THEN 0 ELSE 1 END, c.id DESC LIMIT 500");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list critical results"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// A referrer (or technician) of the site acknowledges the critical result; the first
    /// acknowledgement stands.
    pub async fn acknowledge_critical(&self, id: i64, user: &User) -> Result<CriticalResult, Error> {
        let c = self.critical_result(id).await?;
        let scope = Scope::of(user);
        let allowed = matches!(user.role, Role::Referrer | Role::Technician) && scope.sees(c.site_id, Some(c.pool_id));
        if !allowed {
            // another site's result is not even confirmed to exist
            return Err(if scope.sees(c.site_id, Some(c.pool_id)) {
                Error::Forbidden("the referring site acknowledges a critical result / 由申请科室确认".into())
            } else {
                Error::NotFound(format!("critical result {id}"))
            });
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query(
            "UPDATE critical_results SET acknowledged_by = $1, acknowledged_at = $2 WHERE id = $3 AND acknowledged_at IS NULL",
        )
        .bind(user.id)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("acknowledge critical result"))?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "UPDATE alerts SET acknowledged_by = $1, acknowledged_at = $2 \
                 WHERE item_id = $3 AND kind = 'critical_result' AND acknowledged_at IS NULL",
            )
            .bind(user.id)
            .bind(now)
            .bind(c.item_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("acknowledge alert"))?;
            record_event(&mut tx, c.item_id, EventKind::CriticalAcknowledged, Some(user.id), now, &format!("critical result {id}")).await?;
        }
        tx.commit().await?;
        self.critical_result(id).await
    }

    /// Escalate critical results left unacknowledged past `critical_ack` (part of the SLA
    /// tick): once each, to the pool's supervisors.
    pub(crate) async fn escalate_critical(&self, now: i64) -> Result<u64, Error> {
        let before = now - self.config.critical_ack.as_millis() as i64;
        let due: Vec<(i64, ItemId, PoolId)> = sqlx::query(
            "SELECT id, item_id, pool_id FROM critical_results WHERE acknowledged_at IS NULL AND escalated_at IS NULL AND flagged_at <= $1",
        )
        .bind(before)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select unacknowledged critical results"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        let mut tx = self.db.begin_write().await?;
        for (id, item_id, pool_id) in due {
            let done = sqlx::query(
                "UPDATE critical_results SET escalated_at = $1 WHERE id = $2 AND acknowledged_at IS NULL AND escalated_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("escalate critical result"))?
            .rows_affected();
            if done == 1 {
                let minutes = self.config.critical_ack.as_secs() / 60;
                let msg = format!("critical result {id} (item {item_id}) unacknowledged after {minutes} min / 危急值超时未确认");
                raise_alert(&mut tx, AlertKind::CriticalUnacknowledged, Some(pool_id), None, Some(item_id), &msg, now).await?;
                record_event(&mut tx, item_id, EventKind::CriticalEscalated, None, now, &format!("critical result {id}")).await?;
                n += 1;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

}
