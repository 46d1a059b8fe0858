//! The one way an item changes state: [`Transition`], applied with [`Transition::apply`].
//!
//! A transition names the states it may start from, the state it ends in, the event that
//! records it, who did it and when. It is one conditional UPDATE (`… WHERE id = $n AND
//! state IN (…)`), so of several concurrent attempts exactly one wins, on SQLite and on
//! PostgreSQL, across processes; the winner's event is written in the same transaction.
//! Nothing else in the crate writes `worklist_items.state`.

use readhub_types::{ItemId, PoolId, UserId};
use storage::db::WriteTx;

use crate::events::record_event;
use crate::{Error, EventKind, ItemState};

/// A value for a column set (or compared) beside the state.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<UserId> for Val {
    fn from(v: UserId) -> Self {
        Val::Int(Some(v.get()))
    }
}
impl From<Option<UserId>> for Val {
    fn from(v: Option<UserId>) -> Self {
        Val::Int(v.map(UserId::get))
    }
}
impl From<PoolId> for Val {
    fn from(v: PoolId) -> Self {
        Val::Int(Some(v.get()))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_string()))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}

/// One state change of one item.
#[derive(Debug)]
pub(crate) struct Transition {
    item: ItemId,
    from: Vec<ItemState>,
    to: ItemState,
    event: EventKind,
    actor: Option<UserId>,
    at: i64,
    detail: String,
    set: Vec<(&'static str, Val)>,
    guards: Vec<(&'static str, Val)>,
    silent: bool,
}

impl Transition {
    /// `item` goes from one of `from` to `to`, recorded as `event` by `actor` at `at`.
    pub fn new(item: ItemId, from: &[ItemState], to: ItemState, event: EventKind, actor: Option<UserId>, at: i64) -> Self {
        Transition {
            item,
            from: from.to_vec(),
            to,
            event,
            actor,
            at,
            detail: String::new(),
            set: Vec::new(),
            guards: Vec::new(),
            silent: false,
        }
    }

    /// The event's detail text.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Also set `column` (a fixed column name of `worklist_items`).
    pub fn set(mut self, column: &'static str, value: impl Into<Val>) -> Self {
        self.set.push((column, value.into()));
        self
    }

    /// Only if this condition holds too: `condition` is a fixed SQL comparison whose right
    /// side is the value, e.g. `"claimed_by ="` or `"lease_expires_at <="`.
    pub fn only_if(mut self, condition: &'static str, value: impl Into<Val>) -> Self {
        self.guards.push((condition, value.into()));
        self
    }

    /// The claim columns a transition into `claimed` sets (and out of it clears).
    pub fn claim_by(self, user: Option<UserId>, lease_expires_at: Option<i64>) -> Self {
        let at = user.map(|_| self.at);
        self.set("claimed_by", user).set("claimed_at", at).set("lease_expires_at", lease_expires_at)
    }

    /// No event: only for an item that stays in its state and whose change is no news
    /// (the 2nd…Nth instance of one transfer).
    pub fn silently(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Apply inside `tx`. Ok(true): done and recorded; Ok(false): the item was not in one of
    /// the `from` states (or a condition failed), nothing changed.
    pub async fn apply(self, tx: &mut WriteTx<'_>) -> Result<bool, Error> {
        let mut sql = String::from("UPDATE worklist_items SET state = $1, updated_at = $2");
        let mut n = 2;
        for (col, _) in &self.set {
            n += 1;
            sql.push_str(&format!(", {col} = ${n}"));
        }
        n += 1;
        sql.push_str(&format!(" WHERE id = ${n}"));
        let states: Vec<String> = self.from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        sql.push_str(&format!(" AND state IN ({})", states.join(", ")));
        for (cond, _) in &self.guards {
            n += 1;
            sql.push_str(&format!(" AND {cond} ${n}"));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(self.to.as_str()).bind(self.at);
        for (_, v) in self.set.iter() {
            q = bind(q, v);
        }
        q = q.bind(self.item);
        for (_, v) in self.guards.iter() {
            q = bind(q, v);
        }
        let done = q.execute(&mut **tx).await.map_err(Error::db("change item state"))?.rows_affected() == 1;
        if done && !self.silent {
            record_event(tx, self.item, self.event, self.actor, self.at, &self.detail).await?;
        }
        Ok(done)
    }
}

fn bind<'q>(q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, v: &Val) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match v {
        Val::Int(i) => q.bind(*i),
        Val::Text(t) => q.bind(t.clone()),
    }
}
