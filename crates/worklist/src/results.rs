//! Results out: where each site wants its reports (its HIS over HL7 v2, its FHIR server,
//! its PACS), and the durable outbox that takes them there. A row is queued per destination
//! in the transaction that signs, corrects or amends a report, so a signed report is never
//! left behind; a node takes a due row with a lease (one node at a time, a dead node's lease
//! lapses), and the adapters (HL7, FHIR, DICOM) build and send what the row names.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Error, ItemId, SiteId, Worklist};

/// A site's PACS: where the report goes as an Encapsulated PDF in the study.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacsDestination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// Where a site wants its reports; each key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// its HIS's MLLP listener, `host:port`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hl7: Option<String>,
    /// its FHIR server's base URL (DiagnosticReports are PUT there)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacs: Option<PacsDestination>,
}

/// How a report goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Hl7,
    Fhir,
    Pacs,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Hl7 => "hl7",
            Channel::Fhir => "fhir",
            Channel::Pacs => "pacs",
        }
    }
    fn parse(s: &str) -> Option<Channel> {
        match s {
            "hl7" => Some(Channel::Hl7),
            "fhir" => Some(Channel::Fhir),
            "pacs" => Some(Channel::Pacs),
            _ => None,
        }
    }
}

/// What happened to the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultEvent {
    Signed,
    Corrected,
    Addended,
}

impl ResultEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultEvent::Signed => "signed",
            ResultEvent::Corrected => "corrected",
            ResultEvent::Addended => "addended",
        }
    }
    fn parse(s: &str) -> ResultEvent {
        match s {
            "corrected" => ResultEvent::Corrected,
            "addended" => ResultEvent::Addended,
            _ => ResultEvent::Signed,
        }
    }
}

/// One delivery: a report event to one destination.
#[derive(Debug, Clone, Serialize)]
pub struct ResultDelivery {
    pub id: i64,
    pub site_id: SiteId,
    pub site_name: String,
    pub item_id: ItemId,
    pub report_id: i64,
    pub channel: Channel,
    pub event: ResultEvent,
    pub destination: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Outbound {
    /// Check every destination; what is wrong is named.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(h) = &self.hl7 {
            let ok = h.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(Error::Invalid(format!("hl7 {h:?}: give the HIS's MLLP listener as host:port")));
            }
        }
        if let Some(f) = &self.fhir {
            if !(f.starts_with("http://") || f.starts_with("https://")) {
                return Err(Error::Invalid(format!("fhir {f:?}: give the FHIR server's base URL (http:// or https://)")));
            }
        }
        if let Some(p) = &self.pacs {
            let ae = p.ae_title.trim();
            if ae.is_empty() || ae.len() > 16 || !ae.is_ascii() || ae.contains('\\') {
                return Err(Error::Invalid(format!("pacs ae_title {:?}: 1–16 ASCII characters", p.ae_title)));
            }
            if p.host.trim().is_empty() || p.port == 0 {
                return Err(Error::Invalid("pacs: give host and port (1–65535)".into()));
            }
        }
        Ok(())
    }

    /// The destinations, as (channel, where) pairs.
    fn destinations(&self) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        if let Some(h) = &self.hl7 {
            out.push((Channel::Hl7, h.clone()));
        }
        if let Some(f) = &self.fhir {
            out.push((Channel::Fhir, f.clone()));
        }
        if let Some(p) = &self.pacs {
            out.push((Channel::Pacs, format!("{}@{}:{}", p.ae_title.trim(), p.host.trim(), p.port)));
        }
        out
    }
}

fn outbound_of(json: Option<String>) -> Outbound {
    json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default()
}

/// Queue a report event to every destination of its site, inside `tx`.
pub(crate) async fn enqueue_results(
    tx: &mut storage::db::WriteTx<'_>,
    site_id: SiteId,
    item_id: ItemId,
    report_id: i64,
    event: ResultEvent,
    now: i64,
) -> Result<(), Error> {
    let json: Option<String> = sqlx::query("SELECT outbound FROM sites WHERE id = $1")
        .bind(site_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("select site outbound"))?
        .and_then(|r| r.get(0));
    for (channel, destination) in outbound_of(json).destinations() {
        sqlx::query(
            "INSERT INTO result_outbox (site_id, item_id, report_id, channel, event, destination, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(site_id)
        .bind(item_id)
        .bind(report_id)
        .bind(channel.as_str())
        .bind(event.as_str())
        .bind(&destination)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("queue result"))?;
    }
    Ok(())
}

const DELIVERY_SELECT: &str = "SELECT o.id, o.site_id, s.name, o.item_id, o.report_id, o.channel, o.event, o.destination, o.created_at, \
    o.attempts, o.next_attempt_at, o.delivered_at, o.last_error FROM result_outbox o JOIN sites s ON s.id = o.site_id";

fn delivery_from_row(r: &sqlx::any::AnyRow) -> Option<ResultDelivery> {
    Some(ResultDelivery {
        id: r.get(0),
        site_id: r.get(1),
        site_name: r.get(2),
        item_id: r.get(3),
        report_id: r.get(4),
        channel: Channel::parse(&r.get::<String, _>(5))?,
        event: ResultEvent::parse(&r.get::<String, _>(6)),
        destination: r.get(7),
        created_at: r.get(8),
        attempts: r.get(9),
        next_attempt_at: r.get(10),
        delivered_at: r.get(11),
        last_error: r.get(12),
    })
}

/// How long a node holds a delivery it took (a delivery takes seconds; a node that died
/// with it leaves it to another after this).
const LEASE_MS: i64 = 120_000;

impl Worklist {
    /// A site's destinations.
    pub async fn site_outbound(&self, site_id: SiteId) -> Result<Outbound, Error> {
        let json: Option<String> = sqlx::query("SELECT outbound FROM sites WHERE id = $1")
            .bind(site_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select site outbound"))?
            .and_then(|r| r.get(0));
        Ok(outbound_of(json))
    }

    /// Set where a site's reports go (an empty one: nowhere).
    pub async fn set_site_outbound(&self, site_id: SiteId, outbound: &Outbound) -> Result<(), Error> {
        outbound.validate()?;
        let json = serde_json::to_string(outbound).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE sites SET outbound = $1 WHERE id = $2")
            .bind(json)
            .bind(site_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("set site outbound"))?;
        tx.commit().await?;
        Ok(())
    }

    /// Take up to `limit` due deliveries for this node: each is leased, so another node does
    /// not send it at the same time.
    pub async fn take_due_results(&self, node: &str, limit: i64) -> Result<Vec<ResultDelivery>, Error> {
        let now = self.now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DELIVERY_SELECT} WHERE o.delivered_at IS NULL AND o.next_attempt_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1) \
             ORDER BY o.id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select due results"))?;
        let mut mine = Vec::new();
        for d in rows.iter().filter_map(delivery_from_row) {
            let mut tx = self.db.begin_write().await?;
            let took = sqlx::query(
                "UPDATE result_outbox SET lease_until = $1, leased_by = $2 WHERE id = $3 AND delivered_at IS NULL \
                 AND (lease_until IS NULL OR lease_until < $4)",
            )
            .bind(now + LEASE_MS)
            .bind(node)
            .bind(d.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("lease result"))?
            .rows_affected();
            tx.commit().await?;
            if took == 1 {
                mine.push(d);
            }
        }
        Ok(mine)
    }

    /// Record an attempt: delivered, or failed with a retry after a backoff (2^attempts
    /// seconds, at most 10 minutes; the outbox keeps trying, and the admin view shows it).
    pub async fn record_result(&self, id: i64, outcome: Result<(), String>) -> Result<(), Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        match outcome {
            Ok(()) => sqlx::query(
                "UPDATE result_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL, lease_until = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("record result"))?,
            Err(e) => {
                let attempts: i64 = sqlx::query("SELECT attempts FROM result_outbox WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Error::db("select result attempts"))?
                    .get(0);
                let backoff = 1000 * (1i64 << (attempts + 1).min(9)).min(600);
                sqlx::query(
                    "UPDATE result_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, lease_until = NULL WHERE id = $3",
                )
                .bind(e.chars().take(1000).collect::<String>())
                .bind(now + backoff)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("record result"))?
            }
        };
        tx.commit().await?;
        Ok(())
    }

    /// The outbox as the admins see it: `pending` (not delivered yet, failing or not) or
    /// `failed` (not delivered, at least one attempt failed), or `delivered`; newest first.
    pub async fn list_results(&self, state: Option<&str>, limit: i64) -> Result<Vec<ResultDelivery>, Error> {
        let cond = match state {
            Some("pending") => "o.delivered_at IS NULL",
            Some("failed") => "o.delivered_at IS NULL AND o.last_error IS NOT NULL",
            Some("delivered") => "o.delivered_at IS NOT NULL",
            None | Some("") => "1 = 1",
            Some(other) => return Err(Error::Invalid(format!("state {other:?}: pending, failed or delivered"))),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{DELIVERY_SELECT} WHERE {cond} ORDER BY o.id DESC LIMIT $1")))
            .bind(limit.clamp(1, 1000))
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list results"))?;
        Ok(rows.iter().filter_map(delivery_from_row).collect())
    }
}
