//! The item event trail: every transition, with actor and time (turnaround times and
//! audits are read from it).

use sqlx::Row;
use storage::db::WriteTx;

use crate::{ItemId, UserId, Error, EventKind, Worklist};

/// Append an event to an item's trail, inside the transaction that made the change.
pub(crate) async fn record_event(
    tx: &mut WriteTx<'_>,
    item_id: ItemId,
    kind: EventKind,
    actor: Option<UserId>,
    at: i64,
    detail: &str,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO item_events (item_id, kind, actor_id, at, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(item_id)
        .bind(kind.as_str())
        .bind(actor)
        .bind(at)
        .bind(detail)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("insert event"))?;
    Ok(())
}

impl Worklist {
    /// The item's event trail, oldest first.
    pub async fn events(&self, id: ItemId) -> Result<Vec<(EventKind, Option<UserId>, i64, String)>, Error> {
        let rows = sqlx::query("SELECT kind, actor_id, at, detail FROM item_events WHERE item_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list events"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    EventKind::try_from(r.get::<String, _>("kind").as_str())?,
                    r.get("actor_id"),
                    r.get("at"),
                    r.get("detail"),
                ))
            })
            .collect()
    }
}
