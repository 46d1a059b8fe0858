//! The one consumer of arrivals (storage::arrival): C-STORE and STOW-RS alike hand what
//! they stored to the worklist here, and here alone is decided what an arrival does to the
//! study's item: open it (routed to a pool), update it, flag new images after a report,
//! re-queue a retake, and, when a transfer ends, start the quiet period after which the
//! study is ready to read.
//!
//! The rule for "first instance of a study in this transfer": the transfer is not yet among
//! the study's `open_transfers`. An open transfer keeps the study from becoming ready.
//!
//! Arrivals are taken off the queue in the same transaction as the item changes they make,
//! so each is applied exactly once even with several consumers (processes) and crashes.

use sqlx::Row;
use storage::arrival::{self, Arrival, ArrivalKind};
use storage::db::WriteTx;
use storage::{NodeName, TransferId};

use crate::alerts::{raise_alert, AlertKind};
use crate::events::record_event;
use crate::transition::Transition;
use crate::{ItemId, PoolId, SiteId, StudyPk, Error, EventKind, ItemState, Priority, Worklist};

/// Arrivals applied per transaction: one commit for a burst of CT slices.
const BATCH: i64 = 256;

/// Batches applied per call at most, so a STOW-RS request that applies the queue before it
/// answers does not work off a county's whole backlog; the background consumer calls again
/// at once while there is more.
const MAX_BATCHES: usize = 16;

/// The most arrivals one call of [`Worklist::consume_arrivals`] applies: a call that applied
/// this many may have left more.
pub const PER_CALL: usize = MAX_BATCHES * BATCH as usize;

/// What the index knows of an arriving instance that routing and the item need.
struct Facts {
    study_pk: StudyPk,
    site_id: SiteId,
    sop_class_uid: String,
    modality: Option<String>,
    body_part: Option<String>,
    study_description: Option<String>,
    accession_number: Option<String>,
    patient_id: String,
    priority: Priority,
}

impl Worklist {
    /// Apply the due arrivals, at most [`PER_CALL`]. Returns how many were taken
    /// off the queue. Run by the background consumer (woken by each acknowledgement, and on a
    /// tick), and by STOW-RS before it answers, so its items are current when the client
    /// hears back.
    pub async fn consume_arrivals(&self) -> Result<usize, Error> {
        if self.config.hold_arrivals {
            return Ok(0);
        }
        let mut applied = 0;
        for _ in 0..MAX_BATCHES {
            let mut tx = self.db.begin_write().await?;
            let batch = arrival::take_due(&mut tx, storage::now_ms(), BATCH).await?;
            if batch.is_empty() {
                return Ok(applied);
            }
            let mut failed = None;
            for a in &batch {
                if let Err(e) = self.apply(&mut tx, a).await {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                None => {
                    tx.commit().await?;
                    applied += batch.len();
                }
                Some(e) => {
                    // the batch rolls back; apply each alone so one bad arrival does not
                    // hold up the others (it is retried later, never dropped)
                    drop(tx);
                    tracing::warn!(error = %e, "applying a batch of arrivals failed; applying them one by one");
                    for a in &batch {
                        applied += self.apply_alone(a).await? as usize;
                    }
                }
            }
            if (batch.len() as i64) < BATCH {
                return Ok(applied);
            }
        }
        Ok(applied)
    }

    async fn apply_alone(&self, a: &Arrival) -> Result<bool, Error> {
        let mut tx = self.db.begin_write().await?;
        let Some(a) = arrival::take_one(&mut tx, a.seq).await? else {
            return Ok(false);
        };
        match self.apply(&mut tx, &a).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(e) => {
                drop(tx);
                tracing::error!(arrival = a.seq, transfer = %a.transfer, attempts = a.attempts + 1, error = %e,
                    "an arrival could not be applied to the worklist; will retry");
                arrival::postpone(&self.db, a.seq, a.attempts, &e.to_string()).await?;
                Ok(false)
            }
        }
    }

    async fn apply(&self, tx: &mut WriteTx<'_>, a: &Arrival) -> Result<(), Error> {
        match &a.kind {
            // an old archive's instances are history (priors), not reading work
            ArrivalKind::Instance { .. } if a.transfer.is_archive() => Ok(()),
            ArrivalKind::Instance { instance_pk, .. } => {
                let facts = facts(tx, *instance_pk, self.config.priority_attribute).await?;
                let item = self.instance_arrived(tx, &facts, &a.node, &a.transfer).await?;
                if readhub_types::sop::is_ecg_waveform(&facts.sop_class_uid) {
                    // an ECG is measured and checked against the critical criteria (worklist::ecg)
                    crate::ecg::queue_analysis(tx, *instance_pk, item, a.at).await?;
                }
                Ok(())
            }
            ArrivalKind::TransferEnded => self.transfer_ended(tx, &a.transfer).await,
            ArrivalKind::StudyComplete { study_pk } => self.study_complete(tx, *study_pk).await,
            ArrivalKind::UidCollision(c) => self.uid_collision(tx, c, a.at).await,
        }
    }

    /// An instance was refused because a UID of it belongs to another site: a UID collision
    /// between vendors, or a sender trying to add to a study it does not own. Only the
    /// admins are told (the alert names both sites; neither site's staff sees the other).
    async fn uid_collision(&self, tx: &mut WriteTx<'_>, c: &storage::arrival::UidCollision, at: i64) -> Result<(), Error> {
        let name = |id: SiteId| async move {
            Ok::<_, Error>(storage::sites::get_site(&self.db, id).await?.map_or_else(|| format!("site {id}"), |s| s.name))
        };
        let (sender, owner) = (name(c.sender_site).await?, name(c.owner_site).await?);
        let message = format!(
            "{sender} ({}) sent instance {} whose {} {} belongs to {owner}: refused. A UID collision between \
             vendors, or a sender adding to another site's study; check the sender's configuration. / \
             {sender} 发送的影像的 UID 属于 {owner}, 已拒收",
            c.source, c.sop_instance_uid, c.attribute, c.uid
        );
        crate::alerts::raise_alert(tx, crate::alerts::AlertKind::UidCollision, None, None, None, &message, at).await
    }

    /// At start, before this node receives anything: end the transfers an earlier run of
    /// this node left open when it died, so their studies become ready after the quiet
    /// period rather than after the stall horizon. Returns how many were ended.
    pub async fn recover_transfers(&self, node: &NodeName) -> Result<usize, Error> {
        let now = storage::now_ms();
        let mut tx = self.db.begin_write().await?;
        let mut open = arrival::pending_transfers_of_node(&mut tx, node).await?;
        let seen: Vec<TransferId> = sqlx::query("SELECT DISTINCT transfer FROM open_transfers WHERE node = $1")
            .bind(node.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::db("select open transfers"))?
            .iter()
            .map(|r| TransferId::from_stored(r.get(0)))
            .collect();
        for t in seen {
            if !open.contains(&t) {
                open.push(t);
            }
        }
        for t in &open {
            arrival::end_transfer_in(&mut tx, node, t, now).await?;
        }
        tx.commit().await?;
        if !open.is_empty() {
            tracing::warn!(node = %node, transfers = open.len(), "transfers the node's last run left open were ended; their studies become ready after the quiet period");
        }
        Ok(open.len())
    }

    /// On the node running the ticker: end the transfers of the nodes that died (no
    /// heartbeat for `timeout`), so their studies become ready after the quiet period rather
    /// than after the stall horizon. Returns how many transfers were ended.
    pub async fn end_transfers_of_lapsed_nodes(&self, me: &NodeName, timeout: std::time::Duration) -> Result<usize, Error> {
        let now = storage::now_ms();
        let mut ended = 0;
        for node in storage::lease::lapsed_nodes(&self.db, now, timeout).await? {
            // this node is alive, whatever its row says (a write of it failed)
            if &node == me {
                continue;
            }
            let n = self.recover_transfers(&node).await?;
            storage::lease::forget_node(&self.db, &node, now, timeout).await?;
            tracing::warn!(node = %node, transfers = n, after = ?timeout, "a node stopped beating: the transfers it was receiving were ended");
            ended += n;
        }
        Ok(ended)
    }

    /// An instance arrived in `transfer`: open the study's item (routed to a pool) or update it.
    async fn instance_arrived(&self, tx: &mut WriteTx<'_>, f: &Facts, node: &NodeName, transfer: &TransferId) -> Result<ItemId, Error> {
        let now = self.now();
        let first_in_transfer = sqlx::query(
            "INSERT INTO open_transfers (study_id, transfer, node, opened_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (study_id, transfer) DO NOTHING",
        )
        .bind(f.study_pk)
        .bind(transfer.as_str())
        .bind(node.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("open transfer"))?
        .rows_affected()
            == 1;
        // two tries: a concurrent consumer (another process) may open the item between our
        // read and our insert; then this arrival updates that item
        for _ in 0..2 {
            let existing = sqlx::query("SELECT id, state, priority, pool_id, last_instance_at FROM worklist_items WHERE study_id = $1")
                .bind(f.study_pk)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db("select item"))?;
            match existing {
                Some(r) => return self.update_item(tx, f, &r, first_in_transfer, now).await,
                None => {
                    if let Some(id) = self.open_item(tx, f, now).await? {
                        return Ok(id);
                    }
                }
            }
        }
        Err(Error::Conflict(format!("the item of study {} could not be opened or found", f.study_pk)))
    }

    /// Open a study's item, routed to a pool. None: another consumer opened it first.
    async fn open_item(&self, tx: &mut WriteTx<'_>, f: &Facts, now: i64) -> Result<Option<ItemId>, Error> {
        let site = storage::sites::get_site(&self.db, f.site_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("site {}", f.site_id)))?;
        let consortium = storage::sites::consortium_name(&self.db, site.consortium_id).await?.unwrap_or_default();
        let decision = self
            .route(&crate::routing::StudyFacts {
                site: &site.name,
                consortium: &consortium,
                consortium_id: site.consortium_id,
                modality: f.modality.as_deref(),
                sop_class_uid: &f.sop_class_uid,
                body_part: f.body_part.as_deref(),
                study_description: f.study_description.as_deref(),
                priority: f.priority,
                is_ecg: storage::sop::is_ecg_waveform(&f.sop_class_uid),
                at: now,
            })
            .await?;
        let priority = decision.priority.map_or(f.priority, |p| p.min(f.priority));
        let pool = &decision.pool;
        let deadline = now + self.sla_target(pool.id, priority).await?;
        // the one place an item is born; it is born receiving
        let id: Option<ItemId> = sqlx::query(
            "INSERT INTO worklist_items (study_id, site_id, pool_id, priority, state, routed_by, \
               last_instance_at, created_at, updated_at, deadline_at, routing_version, preferred_reader) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (study_id) DO NOTHING RETURNING id",
        )
        .bind(f.study_pk)
        .bind(f.site_id)
        .bind(pool.id)
        .bind(priority as i64)
        .bind(ItemState::Receiving.as_str())
        .bind(&decision.routed_by)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(deadline)
        .bind(decision.version)
        .bind(decision.preferred_reader)
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("insert item"))?
        .map(|r| r.get(0));
        let Some(id) = id else { return Ok(None) };
        record_event(tx, id, EventKind::Arrived, None, now, "").await?;
        record_event(tx, id, EventKind::Routed, None, now, &format!("pool={} rule={}", pool.name, decision.routed_by)).await?;
        if decision.unmatched {
            let msg = format!(
                "no routing rule matched a study from {} (modality {}): sent to pool {} / 无匹配路由规则，已转入默认阅片组",
                site.name,
                f.modality.as_deref().unwrap_or("?"),
                pool.name
            );
            raise_alert(tx, AlertKind::Unrouted, Some(pool.id), None, Some(id), &msg, now).await?;
        }
        // its order (检查申请), by accession number and patient: the item carries it, and
        // takes its priority
        if let Some(acc) = f.accession_number.as_deref() {
            if let Some((_, order_priority)) = crate::orders::link_study(tx, f.site_id, acc, &f.patient_id, f.study_pk, id, now).await? {
                self.raise_item_priority(tx, id, order_priority, now).await?;
            }
        }
        // a retake: the same accession at the same site was returned for quality
        if let Some(acc) = f.accession_number.as_deref().filter(|s| !s.is_empty()) {
            let retaken: Vec<ItemId> = sqlx::query(
                "SELECT w.id FROM worklist_items w JOIN studies st ON st.id = w.study_id \
                 WHERE w.site_id = $1 AND w.state = $2 AND st.accession_number = $3 AND w.id <> $4",
            )
            .bind(f.site_id)
            .bind(ItemState::Rejected.as_str())
            .bind(acc)
            .bind(id)
            .fetch_all(&mut **tx)
            .await
            .map_err(Error::db("select rejected items"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for old in retaken {
                record_event(tx, old, EventKind::Requeued, None, now, &format!("retake arrived as item {id}")).await?;
                record_event(tx, id, EventKind::Requeued, None, now, &format!("retake of item {old}")).await?;
            }
        }
        Ok(Some(id))
    }

    /// A further instance for a study that has its item.
    async fn update_item(&self, tx: &mut WriteTx<'_>, f: &Facts, r: &sqlx::any::AnyRow, first_in_transfer: bool, now: i64) -> Result<ItemId, Error> {
        let id: ItemId = r.get("id");
        let pool_id: PoolId = r.get("pool_id");
        let state = ItemState::try_from(r.get::<String, _>("state").as_str())?;
        let old_priority = Priority::from_i64(r.get("priority"));
        let last: i64 = r.get("last_instance_at");
        // The 2nd…Nth instance of a study in one transfer changes nothing but the time of the
        // last instance (for the stall horizon) and, rarely, a higher priority: written at
        // most once a second, not for every CT slice.
        if !first_in_transfer && now - last < 1000 && f.priority >= old_priority {
            return Ok(id);
        }
        if f.priority < old_priority {
            let target = self.sla_target(pool_id, f.priority).await?;
            sqlx::query("UPDATE worklist_items SET priority = $1, deadline_at = created_at + $2 WHERE id = $3")
                .bind(f.priority as i64)
                .bind(target)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(Error::db("update priority"))?;
        }
        // what new images do to each state; the event only for the first of a transfer
        let (to, event, after_report) = match state {
            ItemState::Receiving | ItemState::Ready => (ItemState::Receiving, EventKind::NewImages, false),
            // the site retook the study: back into the queue
            ItemState::Rejected => (ItemState::Receiving, EventKind::Requeued, false),
            ItemState::Claimed | ItemState::Preliminary => (state, EventKind::NewImages, false),
            ItemState::Reported => (state, EventKind::NewImagesAfterReport, true),
        };
        let mut t = Transition::new(id, &[state], to, event, None, now)
            .set("last_instance_at", now)
            .set("ready_at", None::<i64>)
            .set("complete_at", None::<i64>);
        if after_report {
            t = t.set("new_images_after_report", 1);
        }
        if !first_in_transfer && to == state {
            // more of the same transfer: no news for the trail
            t = t.silently();
        }
        t.apply(tx).await?;
        Ok(id)
    }

    /// A transfer ended: its studies become ready after their quiet period (`quiet`), unless
    /// another transfer is still sending them. A study with no quiet period (a film, an ECG)
    /// is ready now, in this transaction: the reader sees it within a second of the end.
    async fn transfer_ended(&self, tx: &mut WriteTx<'_>, transfer: &TransferId) -> Result<(), Error> {
        let now = self.now();
        let studies: Vec<StudyPk> = sqlx::query("DELETE FROM open_transfers WHERE transfer = $1 RETURNING study_id")
            .bind(transfer.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(Error::db("close transfer"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for pk in studies {
            let complete: bool = sqlx::query("SELECT complete_at FROM worklist_items WHERE study_id = $1")
                .bind(pk)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db("select completeness"))?
                .is_some_and(|r| r.get::<Option<i64>, _>(0).is_some());
            let quiet = if complete { std::time::Duration::ZERO } else { self.quiet_period_of(tx, pk).await? };
            let ready_at = now + quiet.as_millis() as i64;
            let item: Option<ItemId> = sqlx::query("UPDATE worklist_items SET ready_at = $1, updated_at = $2 WHERE study_id = $3 RETURNING id")
                .bind(ready_at)
                .bind(now)
                .bind(pk)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db("end transfer"))?
                .map(|r| r.get(0));
            let others_open = sqlx::query("SELECT 1 FROM open_transfers WHERE study_id = $1")
                .bind(pk)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db("select open transfers"))?
                .is_some();
            if let Some(id) = item.filter(|_| quiet.is_zero() && !others_open) {
                Transition::new(id, &[ItemState::Receiving], ItemState::Ready, EventKind::Ready, None, now).apply(tx).await?;
            }
        }
        Ok(())
    }

    /// The sender declared a study complete (Storage Commitment of all its instances): it is
    /// ready as soon as no association is sending it, without a quiet period.
    async fn study_complete(&self, tx: &mut WriteTx<'_>, study: StudyPk) -> Result<(), Error> {
        let now = self.now();
        let item: Option<ItemId> = sqlx::query("UPDATE worklist_items SET complete_at = $1, ready_at = $1 WHERE study_id = $2 RETURNING id")
            .bind(now)
            .bind(study)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db("mark study complete"))?
            .map(|r| r.get(0));
        let sending = sqlx::query("SELECT 1 FROM open_transfers WHERE study_id = $1")
            .bind(study)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db("select open transfers"))?
            .is_some();
        if let Some(id) = item.filter(|_| !sending) {
            Transition::new(id, &[ItemState::Receiving], ItemState::Ready, EventKind::Ready, None, now).apply(tx).await?;
        }
        Ok(())
    }

    /// Make items ready whose senders are done and whose quiet period has passed (or whose
    /// sender vanished: nothing new for the stall horizon). Returns how many became ready.
    /// Run periodically by every process.
    pub async fn promote_ready(&self, now: i64) -> Result<u64, Error> {
        let stalled_before = now - self.config.stall_horizon.as_millis() as i64;
        // a plain read first: the tick must not take SQLite's writer lock from ingest when
        // nothing is due; the conditional transition below re-checks under the lock
        let ids: Vec<ItemId> = sqlx::query(
            "SELECT w.id FROM worklist_items w WHERE w.state = $1 AND \
               ((w.ready_at IS NOT NULL AND w.ready_at <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM open_transfers t WHERE t.study_id = w.study_id)) \
                OR w.last_instance_at <= $3)",
        )
        .bind(ItemState::Receiving.as_str())
        .bind(now)
        .bind(stalled_before)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select ready items"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let mut n = 0;
        for id in ids {
            // re-checked under the writer lock: a transfer may have opened since the read
            let due = sqlx::query(
                "SELECT w.id FROM worklist_items w WHERE w.id = $1 AND (w.last_instance_at <= $2 \
                   OR (w.ready_at IS NOT NULL AND w.ready_at <= $3 \
                       AND NOT EXISTS (SELECT 1 FROM open_transfers t WHERE t.study_id = w.study_id)))",
            )
            .bind(id)
            .bind(stalled_before)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::db("check ready item"))?
            .is_some();
            if due && Transition::new(id, &[ItemState::Receiving], ItemState::Ready, EventKind::Ready, None, now).apply(&mut tx).await? {
                n += 1;
            }
        }
        tx.commit().await?;
        Ok(n)
    }
}

async fn facts(tx: &mut WriteTx<'_>, instance_pk: i64, priority_attribute: dicom_core::Tag) -> Result<Facts, Error> {
    let r = sqlx::query(
        "SELECT i.study_id, st.site_id, i.sop_class_uid, se.modality, se.body_part, st.study_description, \
           st.accession_number, i.metadata_json, p.patient_id \
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = i.study_id \
         JOIN patients p ON p.id = st.patient_id WHERE i.id = $1",
    )
    .bind(instance_pk)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::db("select arrived instance"))?
    .ok_or_else(|| Error::NotFound(format!("instance {instance_pk}")))?;
    Ok(Facts {
        study_pk: r.get(0),
        site_id: r.get(1),
        sop_class_uid: r.get(2),
        modality: r.get(3),
        body_part: r.get(4),
        study_description: r.get(5),
        accession_number: r.get(6),
        priority: requested_priority(r.get::<Option<String>, _>(7).as_deref(), priority_attribute),
        patient_id: r.get(8),
    })
}

/// The modality's priority flag, from the instance's DICOM JSON (cached by storage at
/// ingest): the configured attribute at the top level, or inside Request Attributes
/// Sequence (modalities that copy the modality worklist put it there). Routine without one.
fn requested_priority(metadata_json: Option<&str>, attribute: dicom_core::Tag) -> Priority {
    let key = format!("{:04X}{:04X}", attribute.group(), attribute.element());
    // most instances carry no flag: skip parsing their whole document (a CT sends hundreds)
    let Some(json) = metadata_json.filter(|j| j.contains(&format!("\"{key}\""))) else {
        return Priority::Routine;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Priority::Routine;
    };
    let text = |o: &serde_json::Value| -> Option<String> {
        let s = o.get(&key)?.get("Value")?.get(0)?.as_str()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let request_attributes = format!("{:04X}{:04X}", 0x0040, 0x0275);
    let s = text(&v).or_else(|| text(v.get(&request_attributes)?.get("Value")?.get(0)?));
    Priority::from_dicom(s.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;

    #[test]
    fn priority_at_the_top_level_or_in_request_attributes() {
        let top = r#"{"00401003": {"vr": "SH", "Value": ["STAT"]}}"#;
        let nested = r#"{"00400275": {"vr": "SQ", "Value": [{"00401003": {"vr": "SH", "Value": ["HIGH"]}}]}}"#;
        let empty = r#"{"00401003": {"vr": "SH"}}"#;
        let attr = tags::REQUESTED_PROCEDURE_PRIORITY;
        assert_eq!(requested_priority(Some(top), attr), Priority::Stat);
        assert_eq!(requested_priority(Some(nested), attr), Priority::Urgent);
        assert_eq!(requested_priority(Some(empty), attr), Priority::Routine);
        assert_eq!(requested_priority(None, attr), Priority::Routine);
        assert_eq!(requested_priority(Some(top), tags::ACCESSION_NUMBER), Priority::Routine);
    }
}
