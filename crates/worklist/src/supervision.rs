//! The supervisor's levers: reassign an item to a reader, re-route it to another pool,
//! change its priority.

use crate::events::record_event;
use crate::items::ItemView;
use crate::scope::Scope;
use crate::transition::Transition;
use crate::{ItemId, PoolId, UserId, Error, EventKind, ItemState, Priority, Role, User, Worklist};

impl Worklist {
    fn may_supervise(user: &User, pool_id: PoolId) -> bool {
        user.role == Role::Admin || (user.role == Role::Reader && user.supervisor && Scope::of(user) == Scope::Pool(pool_id))
    }

    /// A supervisor (or admin) gives an unreported item to a reader of its pool.
    pub async fn reassign(&self, id: ItemId, to: UserId, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        if !Self::may_supervise(by, item.pool_id) {
            return Err(Error::Forbidden("only the pool's supervisor or an admin can reassign / 仅组长或管理员可改派".into()));
        }
        let reader = self.user(to).await?;
        if reader.role != Role::Reader || reader.pool_id != Some(item.pool_id) {
            return Err(Error::Invalid(format!("{} is not a reader of this item's pool", reader.username)));
        }
        let now = self.now();
        let detail = format!("to user {to} (was {})", item.claimed_by.map_or("unclaimed".into(), |u| format!("user {u}")));
        let mut tx = self.db.begin_write().await?;
        let done = Transition::new(id, &[ItemState::Ready, ItemState::Claimed], ItemState::Claimed, EventKind::Reassigned, Some(by.id), now)
            .claim_by(Some(to), Some(now + self.config.lease.as_millis() as i64))
            .detail(detail)
            .apply(&mut tx)
            .await?;
        if !done {
            return Err(Error::Conflict(format!("item is {}: only ready or claimed items can be reassigned", item.state)));
        }
        tx.commit().await?;
        self.item(id).await
    }

    /// An admin (or the source pool's supervisor) sends an unreported item to another pool.
    pub async fn reroute(&self, id: ItemId, pool_name: &str, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        if !Self::may_supervise(by, item.pool_id) {
            return Err(Error::Forbidden("only the pool's supervisor or an admin can re-route / 仅组长或管理员可改派".into()));
        }
        let pool = self.pool_by_name(pool_name).await?;
        let now = self.now();
        let priority = item.priority;
        let deadline = item.arrived_at + self.sla_target(pool.id, priority).await?;
        let detail = format!("pool={} by={}", pool.name, by.username);
        let mut tx = self.db.begin_write().await?;
        // a claimed item goes back to ready in the new pool; receiving and ready stay as they are
        let state = item.state;
        let to = if state == ItemState::Claimed { ItemState::Ready } else { state };
        let done = match state {
            ItemState::Receiving | ItemState::Ready | ItemState::Claimed => {
                Transition::new(id, &[state], to, EventKind::Rerouted, Some(by.id), now)
                    .set("pool_id", pool.id)
                    .set("routed_by", format!("manual:{}", by.username))
                    .set("deadline_at", deadline)
                    .set("preferred_reader", None::<i64>)
                    .claim_by(None, None)
                    .detail(detail)
                    .apply(&mut tx)
                    .await?
            }
            _ => false,
        };
        if !done {
            return Err(Error::Conflict(format!("item is {}: only unreported items can be re-routed", item.state)));
        }
        tx.commit().await?;
        self.item(id).await
    }

    /// Change an item's priority: the site's technician flags STAT at push time, a reader
    /// or admin escalates. The deadline follows from the arrival time and the new target.
    pub async fn set_priority(&self, id: ItemId, priority: Priority, by: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        // the site's technicians (their STAT flag), the pool's readers, admins
        let allowed = by.role != Role::Referrer && Scope::of(by).sees(item.site_id, Some(item.pool_id));
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
        record_event(&mut tx, id, EventKind::PriorityChanged, Some(by.id), now, &detail).await?;
        tx.commit().await?;
        self.item(id).await
    }

}
