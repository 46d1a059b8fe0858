//! ECG analyses and the critical-result suggestions they raise (issue 13). The analysis
//! itself (reading the waveform, measuring, checking the rules) is done outside the
//! worklist; here is what it does to the item: recorded once per instance, the item made
//! STAT when a rule fired, a suggestion per rule that a reader confirms (it becomes a
//! critical result for the site) or dismisses (kept, with who and why). Nothing is sent to a
//! site without a reader's confirmation.

use serde::Serialize;
use sqlx::Row;

use crate::events::record_event;
use crate::scope::Scope;
use crate::{Error, EventKind, ItemId, ItemState, Priority, Role, User, Worklist};

/// An ECG instance whose item exists and which nobody has analysed yet.
#[derive(Debug, Clone)]
pub struct PendingEcg {
    pub instance_id: i64,
    pub item_id: ItemId,
    pub blob_key: String,
}

/// A suggested critical result.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub id: i64,
    pub item_id: ItemId,
    pub rule: String,
    pub evidence: String,
    pub state: String,
    pub created_at: i64,
    pub decided_by_name: Option<String>,
    pub decided_at: Option<i64>,
    pub note: String,
    pub critical_result_id: Option<i64>,
}

/// Queue an arriving ECG instance for its analysis (called by the arrival consumer, in the
/// transaction that applies the arrival, so no ECG is missed and none is queued twice).
pub(crate) async fn queue_analysis(tx: &mut storage::db::WriteTx<'_>, instance_id: i64, item_id: ItemId, at: i64) -> Result<(), Error> {
    sqlx::query("INSERT INTO ecg_pending (instance_id, item_id, queued_at) VALUES ($1, $2, $3) ON CONFLICT (instance_id) DO NOTHING")
        .bind(instance_id)
        .bind(item_id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("queue ECG analysis"))?;
    Ok(())
}

impl Worklist {
    /// ECG instances waiting for their analysis, oldest first.
    pub async fn pending_ecg(&self, limit: i64) -> Result<Vec<PendingEcg>, Error> {
        let rows = sqlx::query(
            "SELECT p.instance_id, p.item_id, i.blob_key FROM ecg_pending p JOIN instances i ON i.id = p.instance_id \
             ORDER BY p.instance_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select pending ECGs"))?;
        Ok(rows.iter().map(|r| PendingEcg { instance_id: r.get(0), item_id: r.get(1), blob_key: r.get(2) }).collect())
    }

    /// Record one instance's analysis, and what the rules that fired do: the item becomes
    /// STAT (unless reported or rejected) and each rule is a suggestion for the reader.
    /// Returns false when another node recorded this instance first (nothing is changed).
    pub async fn record_ecg_analysis(
        &self,
        pending: &PendingEcg,
        computed_json: Option<&str>,
        error: &str,
        findings: &[(String, String)],
    ) -> Result<bool, Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM ecg_pending WHERE instance_id = $1")
            .bind(pending.instance_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("dequeue ECG analysis"))?;
        let inserted = sqlx::query(
            "INSERT INTO ecg_analyses (instance_id, item_id, analysed_at, computed, error) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(pending.instance_id)
        .bind(pending.item_id)
        .bind(now)
        .bind(computed_json)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert ECG analysis"))?
        .rows_affected();
        if inserted == 0 || findings.is_empty() {
            tx.commit().await?;
            return Ok(inserted == 1);
        }
        let r = sqlx::query("SELECT state, priority, pool_id, created_at FROM worklist_items WHERE id = $1")
            .bind(pending.item_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("select item for ECG criteria"))?;
        let state: String = r.get(0);
        let priority = Priority::from_i64(r.get(1));
        if matches!(ItemState::try_from(state.as_str()), Ok(ItemState::Reported | ItemState::Rejected)) {
            // read already (an ECG analysed after its report, e.g. when readhub was upgraded):
            // the measurements are kept, nothing is suggested
            tx.commit().await?;
            return Ok(true);
        }
        for (rule, evidence) in findings {
            sqlx::query(
                "INSERT INTO ecg_critical_suggestions (item_id, instance_id, rule, evidence, state, created_at) VALUES ($1, $2, $3, $4, 'suggested', $5)",
            )
            .bind(pending.item_id)
            .bind(pending.instance_id)
            .bind(rule)
            .bind(evidence)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert ECG critical suggestion"))?;
            record_event(&mut tx, pending.item_id, EventKind::CriticalSuggested, None, now, &format!("{rule}: {evidence}")).await?;
        }
        if priority != Priority::Stat {
            let pool_id: crate::PoolId = r.get(2);
            let created_at: i64 = r.get(3);
            let target = self.sla_target(pool_id, Priority::Stat).await?;
            sqlx::query("UPDATE worklist_items SET priority = $1, deadline_at = $2, updated_at = $3 WHERE id = $4")
                .bind(Priority::Stat as i64)
                .bind(created_at + target)
                .bind(now)
                .bind(pending.item_id)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("raise ECG item to STAT"))?;
            let detail = format!("{:?} -> stat (critical ECG criteria / 心电图危急值标准)", priority).to_lowercase();
            record_event(&mut tx, pending.item_id, EventKind::PriorityChanged, None, now, &detail).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// How many of the item's suggestions wait for a reader's decision.
    pub async fn open_ecg_suggestions(&self, item_id: ItemId) -> Result<i64, Error> {
        let r = sqlx::query("SELECT COUNT(*) FROM ecg_critical_suggestions WHERE item_id = $1 AND state = 'suggested'")
            .bind(item_id)
            .fetch_one(self.db.pool())
            .await
            .map_err(Error::db("count open ECG suggestions"))?;
        Ok(r.get(0))
    }

    /// The computed measurements recorded for the item's ECGs (JSON), newest first.
    pub async fn ecg_computed(&self, item_id: ItemId) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT computed FROM ecg_analyses WHERE item_id = $1 AND computed IS NOT NULL ORDER BY instance_id DESC")
            .bind(item_id)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select ECG analyses"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The suggestions of an item, for those who see its pool.
    pub async fn ecg_suggestions(&self, item_id: ItemId, user: &User) -> Result<Vec<Suggestion>, Error> {
        let item = self.item(item_id).await?;
        if !Scope::of(user).sees(item.site_id, Some(item.pool_id)) || user.role == Role::Referrer || user.role == Role::Technician {
            return Err(Error::NotFound(format!("item {item_id}")));
        }
        let rows = sqlx::query(
            "SELECT s.id, s.item_id, s.rule, s.evidence, s.state, s.created_at, u.display_name, s.decided_at, s.note, s.critical_result_id \
             FROM ecg_critical_suggestions s LEFT JOIN users u ON u.id = s.decided_by WHERE s.item_id = $1 ORDER BY s.id",
        )
        .bind(item_id)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select ECG suggestions"))?;
        Ok(rows.iter().map(suggestion).collect())
    }

    async fn suggestion(&self, id: i64) -> Result<Suggestion, Error> {
        let r = sqlx::query(
            "SELECT s.id, s.item_id, s.rule, s.evidence, s.state, s.created_at, u.display_name, s.decided_at, s.note, s.critical_result_id \
             FROM ecg_critical_suggestions s LEFT JOIN users u ON u.id = s.decided_by WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select ECG suggestion"))?
        .ok_or_else(|| Error::NotFound(format!("suggestion {id}")))?;
        Ok(suggestion(&r))
    }

    /// A reader of the pool decides a suggestion. Confirming flags a critical result with
    /// `finding` (the rule's name when empty); dismissing records the reader and the note.
    pub async fn decide_ecg_suggestion(&self, id: i64, user: &User, confirm: bool, text: &str) -> Result<Suggestion, Error> {
        let s = self.suggestion(id).await?;
        let item = self.item(s.item_id).await?;
        if !Scope::of(user).sees(item.site_id, Some(item.pool_id)) {
            return Err(Error::NotFound(format!("suggestion {id}")));
        }
        if user.role != Role::Reader {
            return Err(Error::Forbidden("only a reader of this pool confirms or dismisses a critical ECG / 仅本组医生可确认或排除".into()));
        }
        let now = self.now();
        let state = if confirm { "confirmed" } else { "dismissed" };
        let note = text.trim();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query("UPDATE ecg_critical_suggestions SET state = $1, decided_by = $2, decided_at = $3, note = $4 WHERE id = $5 AND state = 'suggested'")
            .bind(state)
            .bind(user.id)
            .bind(now)
            .bind(note)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("decide ECG suggestion"))?
            .rows_affected();
        if n == 0 {
            return Err(Error::Conflict(format!("suggestion {id} was already {} / 已处理", s.state)));
        }
        if !confirm {
            let detail = format!("{} dismissed{}", s.rule, if note.is_empty() { String::new() } else { format!(": {note}") });
            record_event(&mut tx, s.item_id, EventKind::CriticalDismissed, Some(user.id), now, &detail).await?;
            tx.commit().await?;
            return self.suggestion(id).await;
        }
        tx.commit().await?;
        let finding = if note.is_empty() { format!("{} ({})", s.rule, s.evidence) } else { note.to_string() };
        match self.flag_critical(s.item_id, user, &finding).await {
            Ok(c) => {
                sqlx::query("UPDATE ecg_critical_suggestions SET critical_result_id = $1 WHERE id = $2")
                    .bind(c.id)
                    .bind(id)
                    .execute(self.db.pool())
                    .await
                    .map_err(Error::db("link ECG suggestion"))?;
                self.suggestion(id).await
            }
            Err(e) => {
                // the critical result was not sent: the suggestion stays open
                let _ = sqlx::query("UPDATE ecg_critical_suggestions SET state = 'suggested', decided_by = NULL, decided_at = NULL, note = '' WHERE id = $1")
                    .bind(id)
                    .execute(self.db.pool())
                    .await;
                Err(e)
            }
        }
    }
}

fn suggestion(r: &sqlx::any::AnyRow) -> Suggestion {
    Suggestion {
        id: r.get(0),
        item_id: r.get(1),
        rule: r.get(2),
        evidence: r.get(3),
        state: r.get(4),
        created_at: r.get(5),
        decided_by_name: r.get(6),
        decided_at: r.get(7),
        note: r.get(8),
        critical_result_id: r.get(9),
    }
}
