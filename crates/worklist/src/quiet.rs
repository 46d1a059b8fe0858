//! The quiet period: how long a study waits, after the association that sent it ends,
//! before it is ready to read. One rule, here: a site's own setting for the modality, else
//! the site's own for all its modalities, else the hub's for the modality, else the hub's
//! default. A study of several modalities waits for the longest of theirs.
//!
//! Why not one period for all: a CR/DX film or an ECG comes in one association, so waiting
//! after it only keeps a patient waiting (10 s of the 13.6 s a 15 MB DX took to be ready on
//! a 20 Mbit/s line); a CT may come in several associations a few seconds apart, and a
//! reader must not open it half sent. A later instance for a study already ready or being
//! read still flags it (arrivals), whatever its quiet period.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;
use storage::db::WriteTx;

use crate::{Error, SiteId, StudyPk, Worklist};

/// The hub's quiet periods (worklist [`Config`](crate::Config)).
#[derive(Debug, Clone)]
pub struct QuietPeriods {
    /// For modalities not named below.
    pub default: Duration,
    /// By Modality (0008,0060): `CR`, `DX`, `ECG` …
    pub by_modality: BTreeMap<String, Duration>,
}

/// The modalities that arrive in one association, ready when it ends.
pub const ONE_ASSOCIATION_MODALITIES: [&str; 3] = ["CR", "DX", "ECG"];

impl Default for QuietPeriods {
    fn default() -> Self {
        QuietPeriods {
            default: Duration::from_secs(10),
            by_modality: ONE_ASSOCIATION_MODALITIES.iter().map(|m| (m.to_string(), Duration::ZERO)).collect(),
        }
    }
}

/// A site's own quiet period: for one modality, or for all (`modality` None).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteQuietPeriod {
    pub modality: Option<String>,
    pub quiet_ms: i64,
}

/// How a site's "all modalities" row is stored.
const ALL: &str = "*";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl QuietPeriods {
    /// The quiet period of a study of `modalities` at a site with `own` settings.
    pub fn of(&self, modalities: &[String], own: &[SiteQuietPeriod]) -> Duration {
        let site_all = own.iter().find(|p| p.modality.is_none()).map(|p| p.quiet_ms);
        let one = |m: Option<&str>| -> i64 {
            let site_m = m.and_then(|m| own.iter().find(|p| p.modality.as_deref() == Some(m)).map(|p| p.quiet_ms));
            site_m
                .or(site_all)
                .or_else(|| m.and_then(|m| self.by_modality.get(m)).map(|d| ms(*d)))
                .unwrap_or_else(|| ms(self.default))
        };
        let longest = if modalities.is_empty() { one(None) } else { modalities.iter().map(|m| one(Some(m))).max().unwrap_or(0) };
        Duration::from_millis(u64::try_from(longest).unwrap_or(0))
    }
}

/// The modalities of a study as the index holds them (backslash-separated); an ECG
/// waveform whose sender named no modality counts as `ECG`.
fn study_modalities(modalities: &str, sop_classes: &str) -> Vec<String> {
    let mut out: Vec<String> = modalities.split('\\').map(str::trim).filter(|m| !m.is_empty()).map(str::to_uppercase).collect();
    if out.is_empty() && sop_classes.split('\\').any(storage::sop::is_ecg_waveform) {
        out.push("ECG".into());
    }
    out
}

impl Worklist {
    /// The quiet period of a study (see the module's rule).
    pub(crate) async fn quiet_period_of(&self, tx: &mut WriteTx<'_>, study: StudyPk) -> Result<Duration, Error> {
        let Some(r) = sqlx::query("SELECT site_id, modalities, sop_classes FROM studies WHERE id = $1")
            .bind(study)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db("select study modalities"))?
        else {
            return Ok(self.config.quiet.default);
        };
        let site: SiteId = r.get("site_id");
        let modalities = study_modalities(&r.get::<String, _>("modalities"), &r.get::<String, _>("sop_classes"));
        let own = site_rows(&mut **tx, site).await?;
        Ok(self.config.quiet.of(&modalities, &own))
    }

    /// A site's own quiet periods.
    pub async fn site_quiet_periods(&self, site: SiteId) -> Result<Vec<SiteQuietPeriod>, Error> {
        let mut conn = self.db.pool().acquire().await.map_err(Error::db("connect"))?;
        site_rows(&mut *conn, site).await
    }

    /// Set a site's own quiet period, for one modality or all (None); `quiet` None removes it
    /// (the hub's setting applies again). Returns whether anything changed.
    pub async fn set_site_quiet_period(&self, site: SiteId, modality: Option<&str>, quiet: Option<Duration>) -> Result<bool, Error> {
        let key = match modality.map(str::trim) {
            None => ALL.to_string(),
            Some(m) if !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => m.to_uppercase(),
            Some(m) => return Err(Error::Invalid(format!("{m:?} is not a DICOM modality (CR, DX, CT, ECG …)"))),
        };
        let mut tx = self.db.begin_write().await?;
        let changed = match quiet {
            Some(q) => sqlx::query(
                "INSERT INTO site_quiet_periods (site_id, modality, quiet_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (site_id, modality) DO UPDATE SET quiet_ms = excluded.quiet_ms",
            )
            .bind(site)
            .bind(&key)
            .bind(ms(q))
            .execute(&mut *tx)
            .await
            .map_err(Error::db("set quiet period"))?,
            None => sqlx::query("DELETE FROM site_quiet_periods WHERE site_id = $1 AND modality = $2")
                .bind(site)
                .bind(&key)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("remove quiet period"))?,
        }
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(changed)
    }
}

async fn site_rows(conn: &mut sqlx::AnyConnection, site: SiteId) -> Result<Vec<SiteQuietPeriod>, Error> {
    Ok(sqlx::query("SELECT modality, quiet_ms FROM site_quiet_periods WHERE site_id = $1 ORDER BY modality")
        .bind(site)
        .fetch_all(conn)
        .await
        .map_err(Error::db("select quiet periods"))?
        .iter()
        .map(|r| {
            let m: String = r.get("modality");
            SiteQuietPeriod { modality: (m != ALL).then_some(m), quiet_ms: r.get("quiet_ms") }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mods(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_rule() {
        let q = QuietPeriods::default();
        assert_eq!(q.of(&mods(&["CR"]), &[]), Duration::ZERO, "a film is one association");
        assert_eq!(q.of(&mods(&["ECG"]), &[]), Duration::ZERO);
        assert_eq!(q.of(&mods(&["CT"]), &[]), Duration::from_secs(10));
        assert_eq!(q.of(&mods(&["CT", "DX"]), &[]), Duration::from_secs(10), "the longest of a study's modalities");
        assert_eq!(q.of(&[], &[]), Duration::from_secs(10), "no modality: the default");
        let own = [SiteQuietPeriod { modality: None, quiet_ms: 30_000 }, SiteQuietPeriod { modality: Some("DX".into()), quiet_ms: 2_000 }];
        assert_eq!(q.of(&mods(&["CR"]), &own), Duration::from_secs(30), "the site's own for all its modalities");
        assert_eq!(q.of(&mods(&["DX"]), &own), Duration::from_secs(2), "the site's own for the modality first");
        assert_eq!(q.of(&mods(&["DX", "CR"]), &own), Duration::from_secs(30));
    }

    #[test]
    fn an_ecg_without_a_modality_is_an_ecg() {
        assert_eq!(study_modalities("", "1.2.840.10008.5.1.4.1.1.9.1.1"), ["ECG"]);
        assert_eq!(study_modalities("CT\\dx", ""), ["CT", "DX"]);
        assert!(study_modalities("", "1.2.840.10008.5.1.4.1.1.2").is_empty());
    }
}
