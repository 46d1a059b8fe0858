//! Claims: a reader claims an item to read it (exactly one of several concurrent claimants
//! wins), renews the lease while reading, releases it; a lapsed lease returns the item to
//! the queue; `claim_next` takes the head of the queue; auto-assigning pools push items
//! to their least-loaded reader on duty.

use sqlx::Row;

use crate::items::ItemView;
use crate::scope::Scope;
use crate::transition::Transition;
use crate::{ItemId, PoolId, UserId, Error, EventKind, ItemState, Role, User, Worklist};

/// Items an auto-assigning pool pushes to a reader at a time.
const AUTO_ASSIGN_DEPTH: i64 = 1;

impl Worklist {
    fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis() as i64
    }

    /// Claim an item for reading. Exactly one of several concurrent claimants wins; the
    /// others get Conflict.
    pub async fn claim(&self, id: ItemId, user: &User) -> Result<ItemView, Error> {
        let item = self.item(id).await?;
        if user.role != Role::Reader || !Scope::of(user).sees(item.site_id, Some(item.pool_id)) {
            return Err(Error::Forbidden("only a reader of this item's pool can claim it / 仅本阅片组医生可认领".into()));
        }
        if !user.reads(&item.modalities) {
            return Err(Error::Forbidden(format!(
                "you are not qualified to read {} / 无该检查类型的阅片资质",
                item.modalities
            )));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let won = Transition::new(id, &[ItemState::Ready], ItemState::Claimed, EventKind::Claimed, Some(user.id), now)
            .claim_by(Some(user.id), Some(now + self.lease_ms()))
            .apply(&mut tx)
            .await?;
        if !won {
            drop(tx);
            let current = self.item(id).await?;
            return Err(Error::Conflict(match current.state {
                ItemState::Claimed if current.claimed_by == Some(user.id) => "you have already claimed this item".into(),
                ItemState::Claimed => "already claimed by another reader / 已被其他医生认领".into(),
                ItemState::Receiving => "still receiving images; not ready to read / 图像接收中".into(),
                s => format!("item is {s}, not ready to claim"),
            }));
        }
        tx.commit().await?;
        self.item(id).await
    }

    /// Give a claimed item back to the queue (its claimant, or an admin).
    pub async fn release(&self, id: ItemId, user: &User) -> Result<ItemView, Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let mut t = Transition::new(id, &[ItemState::Claimed], ItemState::Ready, EventKind::Released, Some(user.id), now)
            .claim_by(None, None);
        if user.role != Role::Admin {
            t = t.only_if("claimed_by =", user.id);
        }
        if !t.apply(&mut tx).await? {
            return Err(Error::Conflict("the item is not claimed by you".into()));
        }
        tx.commit().await?;
        self.item(id).await
    }

    /// Extend the claimant's lease (the viewer does this while the reader works; saving a
    /// draft does it too).
    pub async fn renew(&self, id: ItemId, user: &User) -> Result<ItemView, Error> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let renewed = Transition::new(id, &[ItemState::Claimed], ItemState::Claimed, EventKind::Renewed, Some(user.id), now)
            .set("lease_expires_at", now + self.lease_ms())
            .only_if("claimed_by =", user.id)
            .apply(&mut tx)
            .await?;
        if !renewed {
            return Err(Error::Conflict("the item is not claimed by you (the claim may have lapsed) / 您未认领此项".into()));
        }
        tx.commit().await?;
        self.item(id).await
    }

    /// Return items whose claim lapsed to the queue. Returns how many.
    pub(crate) async fn expire_leases(&self, now: i64) -> Result<u64, Error> {
        // a read first, without SQLite's writer lock, so an idle tick costs no write
        let expired: Vec<(ItemId, Option<UserId>)> = sqlx::query(
            "SELECT id, claimed_by FROM worklist_items WHERE state = $1 AND lease_expires_at IS NOT NULL \
               AND lease_expires_at <= $2",
        )
        .bind(ItemState::Claimed.as_str())
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select expired leases"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        let mut tx = self.db.begin_write().await?;
        for (id, reader) in expired {
            let detail = reader.map(|r| format!("claim of user {r} lapsed")).unwrap_or_default();
            let lapsed = Transition::new(id, &[ItemState::Claimed], ItemState::Ready, EventKind::LeaseExpired, None, now)
                .claim_by(None, None)
                .only_if("lease_expires_at <=", now)
                .detail(detail)
                .apply(&mut tx)
                .await?;
            n += lapsed as u64;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Claim the first item of the reader's queue that is ready (items with another
    /// preferred reader are left for them). None when nothing is ready.
    pub async fn claim_next(&self, user: &User) -> Result<Option<ItemView>, Error> {
        let Some(pool) = user.pool_id.filter(|_| user.role == Role::Reader) else {
            return Err(Error::Forbidden("only a reader claims from a pool's queue / 仅阅片医生可认领".into()));
        };
        // Several readers asking at once race for the same first items; a lost race means
        // another reader progressed, so keep going (bounded) rather than answer "nothing".
        for _ in 0..64 {
            // breached items first (few, if any), then the rest in index order: priority,
            // deadline (worklist_items_next), so a long queue is not sorted per claim
            let mut candidates = Vec::new();
            // is anything breached? (a probe the planner answers from the partial index)
            let any_breached = sqlx::query(
                "SELECT id FROM worklist_items WHERE breached_at IS NOT NULL AND pool_id = $1 AND state = 'ready' LIMIT 1",
            )
            .bind(pool)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select breached items"))?
            .is_some();
            for breached in [true, false] {
                if breached && !any_breached {
                    continue;
                }
                // a reader qualified for some modalities only looks further down the queue
                let limit = if user.modalities.is_empty() { 10 } else { 100 };
                let sql = format!(
                    "SELECT w.id, st.modalities FROM worklist_items w JOIN studies st ON st.id = w.study_id \
                     WHERE w.pool_id = $1 AND w.state = 'ready' AND w.breached_at IS {} NULL \
                       AND (w.preferred_reader IS NULL OR w.preferred_reader = $2) \
                     ORDER BY w.priority, w.deadline_at, w.id LIMIT {limit}",
                    if breached { "NOT" } else { "" }
                );
                candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(pool)
                    .bind(user.id)
                    .fetch_all(self.db.pool())
                    .await
                    .map_err(Error::db("select next item"))?
                    .iter()
                    .filter(|r| user.reads(&r.get::<String, _>(1)))
                    .map(|r| r.get(0))
                    .collect::<Vec<ItemId>>();
                if !candidates.is_empty() {
                    break;
                }
            }
            if candidates.is_empty() {
                return Ok(None);
            }
            for id in candidates {
                match self.claim(id, user).await {
                    Ok(item) => return Ok(Some(item)),
                    Err(Error::Conflict(_)) => continue, // another reader was quicker
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// Push ready items of auto-assigning pools to their least-loaded on-duty qualified
    /// readers: a reader gets the next item when they hold none (one at a time, as a
    /// reading room's dispatcher would). Returns how many were assigned.
    pub async fn auto_assign_tick(&self) -> Result<u64, Error> {
        let pools: Vec<PoolId> = sqlx::query("SELECT id FROM pools WHERE auto_assign = 1")
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select auto-assign pools"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let now = self.now();
        let mut assigned = 0;
        for pool in pools {
            // readers of the pool on duty now, with how many items they hold
            let mut readers: Vec<(User, i64)> = Vec::new();
            let ids: Vec<UserId> = sqlx::query("SELECT id FROM users WHERE role = 'reader' AND pool_id = $1 AND disabled = 0")
                .bind(pool)
                .fetch_all(self.db.pool())
                .await
                .map_err(Error::db("select readers"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in ids {
                let u = self.user(id).await?;
                if !u.on_duty(now, self.config.utc_offset_hours) {
                    continue;
                }
                let load: i64 = sqlx::query("SELECT COUNT(*) FROM worklist_items WHERE claimed_by = $1 AND state = $2")
                    .bind(id)
                    .bind(ItemState::Claimed.as_str())
                    .fetch_one(self.db.pool())
                    .await
                    .map_err(Error::db("count load"))?
                    .get(0);
                readers.push((u, load));
            }
            if !readers.iter().any(|(_, load)| *load < AUTO_ASSIGN_DEPTH) {
                continue;
            }
            let items: Vec<(ItemId, String, Option<UserId>)> = sqlx::query(
                "SELECT w.id, st.modalities, w.preferred_reader FROM worklist_items w JOIN studies st ON st.id = w.study_id \
                 WHERE w.pool_id = $1 AND w.state = 'ready' \
                 ORDER BY CASE WHEN w.breached_at IS NULL THEN 1 ELSE 0 END, w.priority, w.deadline_at, w.id LIMIT 50",
            )
            .bind(pool)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select ready items"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
            for (item, modalities, preferred) in items {
                let Some(pick) = readers
                    .iter_mut()
                    .filter(|(u, load)| *load < AUTO_ASSIGN_DEPTH && u.reads(&modalities) && preferred.is_none_or(|p| p == u.id))
                    .min_by_key(|(u, load)| (*load, u.id))
                else {
                    continue;
                };
                let mut tx = self.db.begin_write().await?;
                let detail = format!("auto-assigned to {} (held {})", pick.0.username, pick.1);
                let done = Transition::new(item, &[ItemState::Ready], ItemState::Claimed, EventKind::Reassigned, None, now)
                    .claim_by(Some(pick.0.id), Some(now + self.lease_ms()))
                    .detail(detail)
                    .apply(&mut tx)
                    .await?;
                if done {
                    pick.1 += 1;
                    assigned += 1;
                }
                tx.commit().await?;
            }
        }
        Ok(assigned)
    }

}
