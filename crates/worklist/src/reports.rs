//! Reports: a draft written by the claiming reader, signed final by them.

use serde::Serialize;
use sqlx::Row;


use crate::items::insert_event;
use crate::{Error, EventKind, ItemState, ReportStatus, Role, User, Worklist};

/// A report with what a referrer needs to read and print it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: i64,
    pub item_id: i64,
    pub site_id: i64,
    pub site_name: String,
    pub version: i64,
    pub status: ReportStatus,
    pub findings: String,
    pub impression: String,
    pub author: String,
    pub signer: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub signed_at: Option<i64>,
    pub study_instance_uid: String,
    pub accession_number: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub modalities: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<String>,
}

macro_rules! report_select {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, r.item_id, r.site_id, si.name AS site_name, r.version, r.status, r.findings, r.impression, \
               a.display_name AS author, sg.display_name AS signer, r.created_at, r.updated_at, r.signed_at, \
               st.study_uid, st.accession_number, st.study_date, st.study_description, st.modalities, \
               p.patient_id, p.name AS patient_name, p.sex, p.birth_date \
             FROM reports r \
             JOIN studies st ON st.id = r.study_id \
             JOIN patients p ON p.id = st.patient_id \
             JOIN sites si ON si.id = r.site_id \
             JOIN users a ON a.id = r.author_id \
             LEFT JOIN users sg ON sg.id = r.signer_id ",
            $rest
        )
    };
}

fn report_from_row(r: &sqlx::any::AnyRow) -> Result<Report, Error> {
    Ok(Report {
        id: r.get("id"),
        item_id: r.get("item_id"),
        site_id: r.get("site_id"),
        site_name: r.get("site_name"),
        version: r.get("version"),
        status: ReportStatus::try_from(r.get::<String, _>("status").as_str())?,
        findings: r.get("findings"),
        impression: r.get("impression"),
        author: r.get("author"),
        signer: r.get("signer"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        signed_at: r.get("signed_at"),
        study_instance_uid: r.get("study_uid"),
        accession_number: r.get("accession_number"),
        study_date: r.get("study_date"),
        study_description: r.get("study_description"),
        modalities: r.get("modalities"),
        patient_id: r.get("patient_id"),
        patient_name: r.get("patient_name"),
        patient_sex: r.get("sex"),
        patient_birth_date: r.get("birth_date"),
    })
}

impl Worklist {
    async fn claimed_by_me(&self, item_id: i64, user: &User) -> Result<crate::items::ItemView, Error> {
        let item = self.item(item_id).await?;
        if user.role != Role::Reader || item.state != ItemState::Claimed || item.claimed_by != Some(user.id) {
            return Err(Error::Conflict("claim the item before writing its report / 请先认领".into()));
        }
        Ok(item)
    }

    /// Write or update the draft of the claimed item.
    pub async fn save_draft(&self, item_id: i64, user: &User, findings: &str, impression: &str) -> Result<Report, Error> {
        let item = self.claimed_by_me(item_id, user).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let existing = sqlx::query("SELECT id, status FROM reports WHERE item_id = $1 ORDER BY version DESC LIMIT 1")
            .bind(item_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::db("select report"))?;
        let id: i64 = match existing {
            Some(r) if r.get::<String, _>("status") == ReportStatus::Draft.as_str() => {
                let id: i64 = r.get("id");
                sqlx::query("UPDATE reports SET findings = $1, impression = $2, author_id = $3, updated_at = $4 WHERE id = $5")
                    .bind(findings)
                    .bind(impression)
                    .bind(user.id)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("update draft"))?;
                id
            }
            Some(_) => return Err(Error::Conflict("this item's report is already final".into())),
            None => sqlx::query(
                "INSERT INTO reports (item_id, study_id, site_id, version, status, findings, impression, author_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, 'draft', $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(item_id)
            .bind(item.study_pk)
            .bind(item.site_id)
            .bind(findings)
            .bind(impression)
            .bind(user.id)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("insert draft"))?
            .get(0),
        };
        // writing is working: the claim's lease runs on from now
        sqlx::query("UPDATE worklist_items SET lease_expires_at = $1 WHERE id = $2 AND claimed_by = $3")
            .bind(now + self.config.lease.as_millis() as i64)
            .bind(item_id)
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("renew lease"))?;
        insert_event(&mut tx, item_id, EventKind::Drafted, Some(user.id), now, "").await?;
        tx.commit().await?;
        self.report(id).await
    }

    /// Sign the draft final: the item becomes reported and the site can see the report.
    pub async fn sign(&self, item_id: i64, user: &User) -> Result<Report, Error> {
        self.claimed_by_me(item_id, user).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let draft = sqlx::query("SELECT id, impression FROM reports WHERE item_id = $1 AND status = 'draft'")
            .bind(item_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::db("select draft"))?
            .ok_or_else(|| Error::Conflict("there is no draft to sign: save one first / 请先保存报告草稿".into()))?;
        let id: i64 = draft.get("id");
        if draft.get::<String, _>("impression").trim().is_empty() {
            return Err(Error::Invalid("a report needs an impression before it is signed / 请填写诊断意见".into()));
        }
        sqlx::query("UPDATE reports SET status = 'final', signer_id = $1, signed_at = $2, updated_at = $3 WHERE id = $4 AND status = 'draft'")
            .bind(user.id)
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("sign report"))?;
        let moved = sqlx::query(
            "UPDATE worklist_items SET state = 'reported', new_images_after_report = 0, lease_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'claimed' AND claimed_by = $3",
        )
        .bind(now)
        .bind(item_id)
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("mark reported"))?
        .rows_affected();
        if moved != 1 {
            return Err(Error::Conflict("the item is no longer claimed by you".into()));
        }
        insert_event(&mut tx, item_id, EventKind::Signed, Some(user.id), now, "").await?;
        tx.commit().await?;
        self.report(id).await
    }

    pub async fn report(&self, id: i64) -> Result<Report, Error> {
        let r = sqlx::query(report_select!("WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select report"))?
            .ok_or_else(|| Error::NotFound(format!("report {id}")))?;
        report_from_row(&r)
    }

    /// The latest report of an item (draft or final).
    pub async fn report_for_item(&self, item_id: i64) -> Result<Option<Report>, Error> {
        let r = sqlx::query(report_select!("WHERE r.item_id = $1 ORDER BY r.version DESC LIMIT 1"))
            .bind(item_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select report"))?;
        r.map(|r| report_from_row(&r)).transpose()
    }

    /// Final reports of a site, newest first (the referrer's list).
    pub async fn site_reports(&self, site_id: i64) -> Result<Vec<Report>, Error> {
        let rows = sqlx::query(report_select!("WHERE r.site_id = $1 AND r.status = 'final' ORDER BY r.signed_at DESC, r.id DESC"))
            .bind(site_id)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list reports"))?;
        rows.iter().map(report_from_row).collect()
    }

    /// All final reports (admin).
    pub async fn all_reports(&self) -> Result<Vec<Report>, Error> {
        let rows = sqlx::query(report_select!("WHERE r.status = 'final' ORDER BY r.signed_at DESC, r.id DESC"))
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list reports"))?;
        rows.iter().map(report_from_row).collect()
    }

    /// May this user read this report? Referrers and technicians: final reports of their
    /// own site. Readers: reports of their pool's items. Admins: all.
    pub async fn can_read_report(&self, user: &User, report: &Report) -> Result<bool, Error> {
        Ok(match user.role {
            Role::Admin => true,
            Role::Referrer | Role::Technician => user.site_id == Some(report.site_id) && report.status == ReportStatus::Final,
            Role::Reader => self.item(report.item_id).await?.pool_id == user.pool_id.unwrap_or(-1),
        })
    }
}
