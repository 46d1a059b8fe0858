//! Quality rejection: the reader returns a study to its site for a retake, with a reason
//! code; the site is alerted (in the app and by its webhook); new images re-queue it
//! (crate::arrivals).

use crate::alerts::{raise_alert, AlertKind};
use crate::items::ItemView;
use crate::outbox::enqueue_webhook;
use crate::transition::Transition;
use crate::{ItemId, Error, EventKind, ItemState, RejectReason, Role, User, Worklist};

impl Worklist {
    /// The reader who holds the claim returns the study to its site for a retake. The site
    /// sees the reason; new images for the study (or a retake under the same accession)
    /// put it back in the queue.
    pub async fn reject(&self, id: ItemId, reason: RejectReason, note: &str, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        let allowed = by.role == Role::Admin || (by.role == Role::Reader && item.claimed_by == Some(by.id));
        if !allowed {
            return Err(Error::Forbidden("claim the item before returning it for a retake / 请先认领再退回".into()));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let done = Transition::new(id, &[ItemState::Claimed, ItemState::Ready], ItemState::Rejected, EventKind::Rejected, Some(by.id), now)
            .set("rejected_reason", reason.as_str())
            .set("rejected_note", note)
            .set("rejected_at", now)
            .claim_by(None, None)
            .detail(format!("{}: {note}", reason.as_str()))
            .apply(&mut tx)
            .await?;
        if !done {
            return Err(Error::Conflict(format!("item is {}: only an unreported item can be returned", item.state)));
        }
        let msg = format!(
            "study {} ({}) returned for a retake: {} {} / 图像质量不合格，请重新检查",
            item.accession_number.as_deref().unwrap_or(&item.study_instance_uid),
            item.patient_id,
            reason.as_str(),
            note
        );
        raise_alert(&mut tx, AlertKind::QualityRejection, None, Some(item.site_id), Some(id), &msg, now).await?;
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
        enqueue_webhook(&mut tx, item.site_id, &body, now).await?;
        tx.commit().await?;
        self.item(id).await
    }
}
