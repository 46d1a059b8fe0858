//! Which instances still want their pre-rendered pictures (thumbnail, preview). The
//! pictures themselves are made and kept by the viewer's side (viewer_api::renditions);
//! here only the index's record of which instances are done.

use sqlx::Row;

use crate::db::Db;
use crate::Error;

/// An instance not yet rendered.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    /// a version already replaced by a newer one: nobody will ask for its pictures
    pub current: bool,
    pub blob_key: String,
    pub sop_class_uid: String,
    /// None: no pixel data (a report, an ECG waveform): nothing to render
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub size_bytes: i64,
    pub number_of_frames: Option<i64>,
}

/// Claim up to `limit` instances that want rendering, oldest first, until `now + claim_for`:
/// every node of a cluster renders, each its own instances (on PostgreSQL the rows another
/// node is claiming are skipped; SQLite has one writer). An instance whose claim lapsed (its
/// node died mid-batch) is claimed again.
pub async fn claim(db: &Db, now: i64, claim_for: std::time::Duration, limit: i64) -> Result<Vec<Pending>, Error> {
    let skip_locked = if db.backend() == crate::Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE instances SET renditions_claimed_until = $1 WHERE id IN (\
           SELECT id FROM instances WHERE renditions_at IS NULL \
             AND (renditions_claimed_until IS NULL OR renditions_claimed_until < $2) \
           ORDER BY id LIMIT $3{skip_locked}) \
         RETURNING id, is_current, blob_key, sop_class_uid, rows_, columns_, size_bytes, number_of_frames"
    );
    let mut claimed: Vec<Pending> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now + claim_for.as_millis() as i64)
        .bind(now)
        .bind(limit)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("claim instances to render"))?
        .iter()
        .map(|r| Pending {
            id: r.get("id"),
            current: r.get::<i64, _>("is_current") != 0,
            blob_key: r.get("blob_key"),
            sop_class_uid: r.get("sop_class_uid"),
            rows: r.get("rows_"),
            columns: r.get("columns_"),
            size_bytes: r.get("size_bytes"),
            number_of_frames: r.get("number_of_frames"),
        })
        .collect();
    claimed.sort_by_key(|p| p.id);
    Ok(claimed)
}

/// Record that an instance's pictures are made (or that it has none to make).
pub async fn mark_done(db: &Db, id: i64, at: i64) -> Result<(), Error> {
    sqlx::query("UPDATE instances SET renditions_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(Error::db("record renditions"))?;
    Ok(())
}
