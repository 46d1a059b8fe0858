//! Priors and turnaround: the same patient's earlier studies with their reports, and the
//! consortium's turnaround percentiles and volumes ("质控一把尺、调度一张图").

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use crate::{ItemId, Error, Worklist};

/// An earlier study of the same patient (same site and Issuer of Patient ID).
#[derive(Debug, Clone, Serialize)]
pub struct Prior {
    pub item_id: Option<ItemId>,
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub modalities: String,
    pub accession_number: Option<String>,
    pub report_id: Option<i64>,
    pub impression: Option<String>,
    pub signed_at: Option<i64>,
}

/// How to group turnaround figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Site,
    Pool,
    Reader,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy, Error> {
        match s {
            "site" => Ok(GroupBy::Site),
            "pool" => Ok(GroupBy::Pool),
            "reader" => Ok(GroupBy::Reader),
            "day" => Ok(GroupBy::Day),
            other => Err(Error::Invalid(format!("group by {other:?}: use site, pool, reader or day"))),
        }
    }
}

/// Volumes and turnaround (arrival to first signature) of one group, in minutes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Turnaround {
    pub group: String,
    /// studies that arrived in the period
    pub arrived: u64,
    /// of those, reported (first final signature)
    pub reported: u64,
    pub breached: u64,
    pub rejected: u64,
    pub p50_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

impl Worklist {
    /// The patient's other studies, newest first, with their current final report.
    /// The patient's other studies, with their final reports, as far as `user` may see
    /// them: the same rule as for the items and reports themselves (a reader of the ECG
    /// pool does not read the imaging pool's reports through an ECG item's priors).
    pub async fn priors(&self, item_id: ItemId, user: &crate::User) -> Result<Vec<Prior>, Error> {
        let item = self.item(item_id).await?;
        let (visible, key) = crate::scope::Scope::of(user).sql("st.site_id", "w.pool_id", 2);
        let sql = format!(
            "SELECT w.id AS item_id, st.study_uid, st.study_date, st.study_description, st.modalities, st.accession_number, \
               r.id AS report_id, r.impression, r.signed_at \
             FROM studies st \
             JOIN studies me ON me.patient_id = st.patient_id AND me.id = $1 \
             LEFT JOIN worklist_items w ON w.study_id = st.id \
             LEFT JOIN reports r ON r.item_id = w.id AND r.status = 'final' \
             WHERE st.id <> me.id AND {visible} \
             ORDER BY st.study_date DESC, st.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(item.study_pk)
        .bind(key)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select priors"))?;
        Ok(rows
            .iter()
            .map(|r| Prior {
                item_id: r.get("item_id"),
                study_instance_uid: r.get("study_uid"),
                study_date: r.get("study_date"),
                study_description: r.get("study_description"),
                modalities: r.get("modalities"),
                accession_number: r.get("accession_number"),
                report_id: r.get("report_id"),
                impression: r.get("impression"),
                signed_at: r.get("signed_at"),
            })
            .collect())
    }

    /// Turnaround percentiles and volumes of the items that arrived in `[from, to)` (ms),
    /// grouped. The turnaround of an item runs from arrival to its first final signature
    /// (a later correction does not reset it); the reader is that signature's.
    pub async fn turnaround(&self, from: i64, to: i64, by: GroupBy) -> Result<Vec<Turnaround>, Error> {
        let rows = sqlx::query(
            "SELECT w.created_at, w.breached_at, w.state, si.name AS site, po.name AS pool, \
               (SELECT MIN(r.signed_at) FROM reports r WHERE r.item_id = w.id AND r.supersedes IS NULL \
                  AND r.signed_at IS NOT NULL) AS signed_at, \
               (SELECT u.display_name FROM reports r JOIN users u ON u.id = r.signer_id WHERE r.item_id = w.id \
                  AND r.supersedes IS NULL AND r.signed_at IS NOT NULL ORDER BY r.signed_at LIMIT 1) AS reader \
             FROM worklist_items w JOIN sites si ON si.id = w.site_id JOIN pools po ON po.id = w.pool_id \
             WHERE w.created_at >= $1 AND w.created_at < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select turnaround"))?;
        let offset_ms = self.config.utc_offset_hours as i64 * 3_600_000;
        let mut groups: BTreeMap<String, (Turnaround, Vec<f64>)> = BTreeMap::new();
        for r in &rows {
            let created: i64 = r.get("created_at");
            let signed: Option<i64> = r.get("signed_at");
            let key = match by {
                GroupBy::Site => r.get::<String, _>("site"),
                GroupBy::Pool => r.get::<String, _>("pool"),
                GroupBy::Reader => match r.get::<Option<String>, _>("reader") {
                    Some(name) => name,
                    None => continue, // unreported items have no reader yet
                },
                GroupBy::Day => chrono::DateTime::from_timestamp_millis(created + offset_ms)
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default(),
            };
            let (t, tats) = groups.entry(key.clone()).or_insert_with(|| {
                (
                    Turnaround { group: key, arrived: 0, reported: 0, breached: 0, rejected: 0, p50_minutes: None, p90_minutes: None },
                    Vec::new(),
                )
            });
            t.arrived += 1;
            if r.get::<Option<i64>, _>("breached_at").is_some() {
                t.breached += 1;
            }
            if r.get::<String, _>("state") == "rejected" {
                t.rejected += 1;
            }
            if let Some(s) = signed {
                t.reported += 1;
                tats.push((s - created) as f64 / 60_000.0);
            }
        }
        Ok(groups
            .into_values()
            .map(|(mut t, mut tats)| {
                tats.sort_by(|a, b| a.total_cmp(b));
                t.p50_minutes = percentile(&tats, 50.0).map(|v| (v * 10.0).round() / 10.0);
                t.p90_minutes = percentile(&tats, 90.0).map(|v| (v * 10.0).round() / 10.0);
                t
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&[7.0], 90.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
