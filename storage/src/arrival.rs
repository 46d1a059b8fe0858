//! The hand-over from ingest to the worklist: a transactional outbox.
//!
//! C-STORE (the gateway) and STOW-RS (the HTTP API) both ingest through [`crate::Storage`],
//! and both hand what arrived to the worklist through the same typed event, an [`Arrival`].
//! The event is a row of `arrivals`, written **in the same transaction as the index row** of
//! the instance it announces: an acknowledged instance therefore always has its arrival,
//! even if the process dies the next instant. The worklist's one consumer deletes the row in
//! the same transaction as the item change it makes, so each arrival is applied once,
//! whichever process (or restart) gets to it.
//!
//! Instances come in *transfers*: one association, one STOW-RS request. A transfer that
//! stored something is closed by a [`ArrivalKind::TransferEnded`] arrival, so a study is
//! not ready to read while a sender is still sending it. A transfer cut off by a crash is
//! closed at the next start (the worklist's recovery, with [`end_transfer_in`]).
//!
//! Storage knows nothing of worklists: this module only writes and reads the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use readhub_types::StudyPk;
use sqlx::Row;

use crate::db::WriteTx;
use crate::{now_ms, Db, Error};

/// The stable name of a readhub process (node): one per install, the same across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName(Arc<str>);

impl NodeName {
    pub fn new(name: impl Into<String>) -> Self {
        NodeName(Arc::from(name.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The transfer kind of `readhub import` without `--for-reading`.
pub const ARCHIVE_KIND: &str = "archive";

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one transfer: `node/boot/kind-n`. The boot part is new at every start, so a
/// transfer cut off by a crash is never confused with one of the next run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransferId(String);

impl TransferId {
    /// A transfer id read back from a workflow table.
    pub fn from_stored(s: String) -> Self {
        TransferId(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What carried it (`assoc`, `stow`, `import`, `archive`): the last segment's name.
    pub fn kind(&self) -> &str {
        let last = self.0.rsplit('/').next().unwrap_or("");
        last.rsplit_once('-').map_or(last, |(k, _)| k)
    }

    /// Instances brought from an old archive as history (`readhub import`, the default): they
    /// are the priors of later studies, not reading work.
    pub fn is_archive(&self) -> bool {
        self.kind() == ARCHIVE_KIND
    }
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One transfer (an association, a STOW-RS request) as ingest records it.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub node: NodeName,
    pub id: TransferId,
    /// who sent it, for `instances.source` and the ingest audit: `dimse:AE`, `stow:user`
    pub source: String,
}

/// Hands out transfer ids for one process run.
#[derive(Debug)]
pub struct Transfers {
    node: NodeName,
    boot: String,
    next: AtomicU64,
}

impl Transfers {
    pub fn new(node: NodeName) -> Arc<Self> {
        let boot = format!("{:016x}", rand_u64());
        Arc::new(Transfers { node, boot, next: AtomicU64::new(1) })
    }

    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// A new transfer; `kind` says what carries it (`assoc`, `stow`).
    pub fn begin(&self, kind: &str, source: String) -> Transfer {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Transfer {
            node: self.node.clone(),
            id: TransferId(format!("{}/{}/{kind}-{n}", self.node, self.boot)),
            source,
        }
    }
}

fn rand_u64() -> u64 {
    // uuid v4 is already a dependency of storage (blob keys): its randomness will do
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// What an arrival announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrivalKind {
    /// An instance is durable and indexed (a byte-identical duplicate has no arrival).
    Instance { study_pk: StudyPk, instance_pk: i64 },
    /// The transfer has ended (released, aborted, timed out, request answered, or cut off
    /// by a crash and closed at the next start).
    TransferEnded,
    /// An instance was refused because one of its UIDs already belongs to another site:
    /// the admins are to be told.
    UidCollision(UidCollision),
    /// The sender said the study is complete: it asked for Storage Commitment of its
    /// instances and every one is held. Its quiet period ends at once.
    StudyComplete { study_pk: StudyPk },
}

/// Which UID of a refused instance belonged to which other site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UidCollision {
    /// "Study Instance UID", "Series Instance UID" or "SOP Instance UID"
    pub attribute: String,
    pub uid: String,
    pub sop_instance_uid: String,
    /// the site that sent the refused instance
    pub sender_site: readhub_types::SiteId,
    /// the site the UID belongs to
    pub owner_site: readhub_types::SiteId,
    /// where it came from (`dimse:AE` or `stow:user`)
    pub source: String,
}

/// The typed event C-STORE and STOW-RS hand to the worklist.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// position in the queue: arrivals are applied in this order
    pub seq: i64,
    pub kind: ArrivalKind,
    pub node: NodeName,
    pub transfer: TransferId,
    /// when it was written (ms)
    pub at: i64,
    /// how often applying it failed before
    pub attempts: i64,
}

/// Record that an instance arrived, inside the transaction that indexes it.
pub(crate) async fn record_instance(
    tx: &mut WriteTx<'_>,
    transfer: &Transfer,
    study_pk: StudyPk,
    instance_pk: i64,
    at: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO arrivals (kind, node, transfer, study_id, instance_id, at, next_try_at) \
         VALUES ('instance', $1, $2, $3, $4, $5, $6)",
    )
    .bind(transfer.node.as_str())
    .bind(transfer.id.as_str())
    .bind(study_pk)
    .bind(instance_pk)
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("insert arrival"))?;
    Ok(())
}

/// Record a refused UID collision for the worklist to alert the admins about.
pub(crate) async fn record_collision(tx: &mut WriteTx<'_>, transfer: &Transfer, c: &UidCollision, at: i64) -> Result<(), Error> {
    let detail = serde_json::to_string(c).map_err(|e| Error::Invalid(e.to_string()))?;
    sqlx::query(
        "INSERT INTO arrivals (kind, node, transfer, detail, at, next_try_at) VALUES ('uid_collision', $1, $2, $3, $4, $5)",
    )
    .bind(transfer.node.as_str())
    .bind(transfer.id.as_str())
    .bind(detail)
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("insert collision arrival"))?;
    Ok(())
}

/// Record that the sender declared these studies complete (a Storage Commitment request
/// whose every instance is held).
pub async fn record_study_complete(db: &Db, transfer: &Transfer, studies: &[StudyPk]) -> Result<(), Error> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    for pk in studies {
        sqlx::query(
            "INSERT INTO arrivals (kind, node, transfer, study_id, at, next_try_at) VALUES ('study_complete', $1, $2, $3, $4, $5)",
        )
        .bind(transfer.node.as_str())
        .bind(transfer.id.as_str())
        .bind(*pk)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert study complete"))?;
    }
    tx.commit().await
}

/// Record that a transfer has ended. Call it once everything the transfer stored has been
/// answered for.
pub async fn end_transfer(db: &Db, transfer: &Transfer) -> Result<(), Error> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    insert_end(&mut tx, transfer.node.as_str(), transfer.id.as_str(), now).await?;
    tx.commit().await
}

async fn insert_end(tx: &mut WriteTx<'_>, node: &str, transfer: &str, at: i64) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO arrivals (kind, node, transfer, at, next_try_at) VALUES ('transfer_ended', $1, $2, $3, $4)",
    )
    .bind(node)
    .bind(transfer)
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("insert transfer end"))?;
    Ok(())
}

/// The transfers of `node` that have arrivals still waiting (at start: an earlier run of
/// this node died with them open).
pub async fn pending_transfers_of_node(tx: &mut WriteTx<'_>, node: &NodeName) -> Result<Vec<TransferId>, Error> {
    Ok(sqlx::query("SELECT DISTINCT transfer FROM arrivals WHERE node = $1 AND kind = 'instance'")
        .bind(node.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::db("select pending transfers"))?
        .iter()
        .map(|r| TransferId(r.get(0)))
        .collect())
}

/// End a transfer inside the caller's transaction (recovery of transfers cut off by a crash).
pub async fn end_transfer_in(tx: &mut WriteTx<'_>, node: &NodeName, transfer: &TransferId, at: i64) -> Result<(), Error> {
    insert_end(tx, node.as_str(), transfer.as_str(), at).await
}

/// Take up to `limit` due arrivals off the queue, inside the caller's transaction (so they
/// come back if it rolls back), oldest first. Concurrent takers get disjoint sets.
pub async fn take_due(tx: &mut WriteTx<'_>, now: i64, limit: i64) -> Result<Vec<Arrival>, Error> {
    let limit = limit.clamp(1, 10_000);
    let sql = format!(
        "DELETE FROM arrivals WHERE id IN (SELECT id FROM arrivals WHERE next_try_at <= $1 ORDER BY id LIMIT {limit}) \
         RETURNING id, kind, node, transfer, study_id, instance_id, detail, at, attempts"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::db("take arrivals"))?;
    let mut out = rows.iter().map(arrival_from_row).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|a| a.seq);
    Ok(out)
}

/// Take one given arrival (after a batch failed, each is retried alone). None: another
/// consumer has it.
pub async fn take_one(tx: &mut WriteTx<'_>, seq: i64) -> Result<Option<Arrival>, Error> {
    let row = sqlx::query(
        "DELETE FROM arrivals WHERE id = $1 RETURNING id, kind, node, transfer, study_id, instance_id, detail, at, attempts",
    )
    .bind(seq)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::db("take arrival"))?;
    row.as_ref().map(arrival_from_row).transpose()
}

/// Applying this arrival failed: try again later (backoff up to 5 minutes); it is never
/// dropped, since it stands for an acknowledged instance.
pub async fn postpone(db: &Db, seq: i64, attempts: i64, error: &str) -> Result<(), Error> {
    let backoff = 1000i64 << attempts.clamp(0, 8);
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE arrivals SET attempts = attempts + 1, next_try_at = $1, last_error = $2 WHERE id = $3")
        .bind(now_ms() + backoff.min(300_000))
        .bind(error.chars().take(500).collect::<String>())
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("postpone arrival"))?;
    tx.commit().await
}

/// How many arrivals wait to be applied (operators, tests).
pub async fn pending(db: &Db) -> Result<i64, Error> {
    sqlx::query("SELECT COUNT(*) FROM arrivals")
        .fetch_one(db.pool())
        .await
        .map(|r| r.get(0))
        .map_err(Error::db("count arrivals"))
}

fn arrival_from_row(r: &sqlx::any::AnyRow) -> Result<Arrival, Error> {
    let kind = match r.get::<String, _>("kind").as_str() {
        "instance" => ArrivalKind::Instance {
            study_pk: r.get("study_id"),
            instance_pk: r.get("instance_id"),
        },
        "transfer_ended" => ArrivalKind::TransferEnded,
        "study_complete" => ArrivalKind::StudyComplete { study_pk: r.get("study_id") },
        "uid_collision" => {
            let detail: Option<String> = r.get("detail");
            let c = serde_json::from_str(detail.as_deref().unwrap_or_default())
                .map_err(|e| Error::Invalid(format!("a uid_collision arrival without its details: {e}")))?;
            ArrivalKind::UidCollision(c)
        }
        other => return Err(Error::Invalid(format!("unknown arrival kind {other:?}"))),
    };
    Ok(Arrival {
        seq: r.get("id"),
        kind,
        node: NodeName::new(r.get::<String, _>("node")),
        transfer: TransferId(r.get("transfer")),
        at: r.get("at"),
        attempts: r.get("attempts"),
    })
}
