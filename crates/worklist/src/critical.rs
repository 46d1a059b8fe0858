//! Critical results (危急值): a reader flags a finding; the referring site is notified at
//! once (an in-app alert, and its webhook through a durable outbox); a referrer of the site
//! acknowledges; unacknowledged after `critical_ack` the pool's supervisors are alerted.
//! The whole chain (flagged, notified, acknowledged, escalated: who and when) is kept.

use serde::Serialize;
use sqlx::Row;

use crate::items::insert_event;
use crate::sla::{insert_alert, AlertKind};
use crate::{Error, EventKind, Role, User, Worklist};

/// One critical result and its chain.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalResult {
    pub id: i64,
    pub item_id: i64,
    pub site_id: i64,
    pub pool_id: i64,
    pub finding: String,
    pub flagged_by: i64,
    pub flagged_by_name: String,
    pub flagged_at: i64,
    pub notified_at: Option<i64>,
    pub acknowledged_by: Option<i64>,
    pub acknowledged_by_name: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub escalated_at: Option<i64>,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub accession_number: Option<String>,
    pub study_instance_uid: String,
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

/// Queue a webhook delivery to a site (if it has a webhook) inside `tx`.
pub(crate) async fn enqueue_webhook(tx: &mut storage::db::WriteTx<'_>, site_id: i64, body: &serde_json::Value, now: i64) -> Result<(), Error> {
    let url: Option<String> = sqlx::query("SELECT webhook_url FROM sites WHERE id = $1")
        .bind(site_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("select site webhook"))?
        .and_then(|r| r.get::<Option<String>, _>(0))
        .filter(|u| !u.trim().is_empty());
    if let Some(url) = url {
        sqlx::query("INSERT INTO webhook_outbox (site_id, url, body, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(site_id)
            .bind(url)
            .bind(body.to_string())
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("queue webhook"))?;
    }
    Ok(())
}

/// A webhook delivery that is due.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub url: String,
    pub body: String,
    pub attempts: i64,
}

impl Worklist {
    /// A reader of the item's pool flags a critical finding. The site is notified at once.
    pub async fn flag_critical(&self, item_id: i64, user: &User, finding: &str) -> Result<CriticalResult, Error> {
        let item = self.item(item_id).await?;
        if user.role != Role::Reader || user.pool_id != Some(item.pool_id) {
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
        insert_event(&mut tx, item_id, EventKind::CriticalFlagged, Some(user.id), now, finding.trim()).await?;
        let msg = format!(
            "危急值 CRITICAL RESULT: patient {} {} ({}): {} — please acknowledge / 请立即确认",
            item.patient_id,
            item.patient_name.as_deref().unwrap_or(""),
            item.accession_number.as_deref().unwrap_or(&item.study_instance_uid),
            finding.trim()
        );
        insert_alert(&mut tx, AlertKind::CriticalResult, None, Some(item.site_id), Some(item_id), &msg, now).await?;
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
        insert_event(&mut tx, item_id, EventKind::CriticalNotified, None, now, "in-app alert; site webhook queued if configured").await?;
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
        let (clause, key) = match user.role {
            Role::Admin => ("$1 = 0", 0),
            Role::Reader => ("c.pool_id = $1", user.pool_id.unwrap_or(-1)),
            Role::Technician | Role::Referrer => ("c.site_id = $1", user.site_id.unwrap_or(-1)),
        };
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
        let allowed = matches!(user.role, Role::Referrer | Role::Technician) && user.site_id == Some(c.site_id);
        if !allowed {
            // another site's result is not even confirmed to exist
            return Err(if user.role == Role::Admin || user.pool_id == Some(c.pool_id) {
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
            insert_event(&mut tx, c.item_id, EventKind::CriticalAcknowledged, Some(user.id), now, &format!("critical result {id}")).await?;
        }
        tx.commit().await?;
        self.critical_result(id).await
    }

    /// Escalate critical results left unacknowledged past `critical_ack` (part of the SLA
    /// tick): once each, to the pool's supervisors.
    pub(crate) async fn escalate_critical(&self, now: i64) -> Result<u64, Error> {
        let before = now - self.config.critical_ack.as_millis() as i64;
        let due: Vec<(i64, i64, i64)> = sqlx::query(
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
                insert_alert(&mut tx, AlertKind::CriticalUnacknowledged, Some(pool_id), None, Some(item_id), &msg, now).await?;
                insert_event(&mut tx, item_id, EventKind::CriticalEscalated, None, now, &format!("critical result {id}")).await?;
                n += 1;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Set (or clear, with None) a site's webhook URL.
    pub async fn set_site_webhook(&self, site_id: i64, url: Option<&str>) -> Result<(), Error> {
        if let Some(u) = url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::Invalid(format!("webhook {u:?} must be an http:// or https:// URL")));
            }
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE sites SET webhook_url = $1 WHERE id = $2")
            .bind(url)
            .bind(site_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("set webhook"))?;
        tx.commit().await?;
        Ok(())
    }

    /// Webhook deliveries that are due now.
    pub async fn due_deliveries(&self, limit: i64) -> Result<Vec<Delivery>, Error> {
        let rows = sqlx::query(
            "SELECT id, url, body, attempts FROM webhook_outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(self.now())
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select deliveries"))?;
        Ok(rows.iter().map(|r| Delivery { id: r.get(0), url: r.get(1), body: r.get(2), attempts: r.get(3) }).collect())
    }

    /// Record a delivery attempt: delivered, or failed with a retry after a backoff
    /// (2^attempts seconds, at most 10 minutes; the outbox keeps trying).
    pub async fn record_delivery(&self, id: i64, outcome: Result<(), String>) -> Result<(), Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        match outcome {
            Ok(()) => sqlx::query("UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2")
                .bind(now)
                .bind(id),
            Err(e) => {
                let attempts: i64 = sqlx::query("SELECT attempts FROM webhook_outbox WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Error::db("select delivery"))?
                    .get(0);
                let backoff_s = 2i64.saturating_pow(attempts.clamp(0, 20) as u32).min(600);
                sqlx::query("UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3")
                    .bind(e)
                    .bind(now + backoff_s * 1000)
                    .bind(id)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(Error::db("record delivery"))?;
        tx.commit().await?;
        Ok(())
    }
}
