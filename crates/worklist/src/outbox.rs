//! The webhook outbox: notifications to the sites' own systems (critical results, quality
//! rejections), queued in the transaction that decides them and delivered by readhub's
//! notifier with retries and backoff.

use sqlx::Row;

use crate::{SiteId, Error, Worklist};

/// Queue a webhook delivery to a site (if it has a webhook) inside `tx`.
pub(crate) async fn enqueue_webhook(tx: &mut storage::db::WriteTx<'_>, site_id: SiteId, body: &serde_json::Value, now: i64) -> Result<(), Error> {
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
    /// Set (or clear, with None) a site's webhook URL.
    pub async fn set_site_webhook(&self, site_id: SiteId, url: Option<&str>) -> Result<(), Error> {
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
