//! Reports: versions of an item's report. The claiming reader writes a draft; submits it
//! preliminary (in a pool with two-level sign-off a junior must, and a senior then edits,
//! signs or sends it back); a final report is changed only by a signed addendum, or by a
//! correction: a new version that supersedes the final one in the same transaction, so
//! two valid versions never coexist. Referrers see the current final version (marked
//! corrected), readers and admins the whole history.

use serde::Serialize;
use sqlx::Row;


use crate::events::record_event;
use crate::scope::Scope;
use crate::transition::Transition;
use crate::{ItemId, PoolId, SiteId, UserId, Error, EventKind, ItemState, ReportStatus, Role, User, Worklist};

/// A report with what a referrer needs to read and print it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: i64,
    pub item_id: ItemId,
    pub site_id: SiteId,
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
    pub submitted_at: Option<i64>,
    /// the final version this one corrects
    pub supersedes: Option<i64>,
    pub corrected: bool,
    pub correction_reason: Option<String>,
    pub superseded_at: Option<i64>,
    /// the senior's note when the preliminary report was sent back
    pub returned_note: Option<String>,
    pub addenda: Vec<Addendum>,
    /// when the site first opened this version (None: unread at the site)
    pub delivered_at: Option<i64>,
    /// critical results flagged on the study, and the first one not yet acknowledged
    pub critical_count: i64,
    pub open_critical_id: Option<i64>,
}

/// A referrer's search over the site's reports: patient name or ID (substring,
/// case-insensitive), study date range (YYYYMMDD, inclusive).
#[derive(Debug, Clone, Default)]
pub struct ReportSearch {
    pub text: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: i64,
    /// one patient: by Patient ID (and issuer), or by the patient's row
    pub patient_id: Option<String>,
    pub issuer: Option<String>,
    pub patient_pk: Option<i64>,
}

/// A signed note appended to a final report.
#[derive(Debug, Clone, Serialize)]
pub struct Addendum {
    pub id: i64,
    pub text: String,
    pub author: String,
    pub signed_at: i64,
}

macro_rules! report_select {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, r.item_id, r.site_id, si.name AS site_name, r.version, r.status, r.findings, r.impression, \
               a.display_name AS author, sg.display_name AS signer, r.created_at, r.updated_at, r.signed_at, \
               st.study_uid, st.accession_number, st.study_date, st.study_description, st.modalities, \
               p.patient_id, p.name AS patient_name, p.sex, p.birth_date, r.submitted_at, r.supersedes, \
               r.superseded_at, r.returned_note, r.correction_reason, \
               (SELECT MIN(e.at) FROM item_events e WHERE e.item_id = r.item_id AND e.kind = 'delivered' \
                  AND e.detail = 'report ' || CAST(r.id AS TEXT) || ' v' || CAST(r.version AS TEXT)) AS delivered_at, \
               (SELECT COUNT(*) FROM critical_results c WHERE c.item_id = r.item_id) AS critical_count, \
               (SELECT MIN(c.id) FROM critical_results c WHERE c.item_id = r.item_id AND c.acknowledged_at IS NULL) AS open_critical_id \
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
        submitted_at: r.get("submitted_at"),
        supersedes: r.get("supersedes"),
        corrected: r.get::<Option<i64>, _>("supersedes").is_some(),
        correction_reason: r.get("correction_reason"),
        superseded_at: r.get("superseded_at"),
        returned_note: r.get("returned_note"),
        addenda: Vec::new(),
        delivered_at: r.get("delivered_at"),
        critical_count: r.get("critical_count"),
        open_critical_id: r.get("open_critical_id"),
    })
}

impl Worklist {
    async fn claimed_by_me(&self, item_id: ItemId, user: &User) -> Result<crate::items::ItemView, Error> {
        let item = self.item(item_id).await?;
        if user.role != Role::Reader || item.state != ItemState::Claimed || item.claimed_by != Some(user.id) {
            return Err(Error::Conflict("claim the item before writing its report / 请先认领".into()));
        }
        Ok(item)
    }

    /// Write or update the draft of the claimed item.
    pub async fn save_draft(&self, item_id: ItemId, user: &User, findings: &str, impression: &str) -> Result<Report, Error> {
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
        record_event(&mut tx, item_id, EventKind::Drafted, Some(user.id), now, "").await?;
        tx.commit().await?;
        self.report(id).await
    }

    /// Does this pool ask a senior to sign its juniors' reports?
    pub async fn two_level(&self, pool_id: PoolId) -> Result<bool, Error> {
        Ok(sqlx::query("SELECT two_level_signoff FROM pools WHERE id = $1")
            .bind(pool_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select pool"))?
            .is_some_and(|r| r.get::<i64, _>(0) != 0))
    }

    /// The latest version's id and status.
    async fn latest(&self, item_id: ItemId) -> Result<Option<(i64, ReportStatus, UserId)>, Error> {
        sqlx::query("SELECT id, status, author_id FROM reports WHERE item_id = $1 ORDER BY version DESC LIMIT 1")
            .bind(item_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select report"))?
            .map(|r| Ok((r.get(0), ReportStatus::try_from(r.get::<String, _>(1).as_str())?, r.get(2))))
            .transpose()
    }

    /// The claimant submits the draft as a preliminary report: it awaits a senior's
    /// signature in a two-level pool (the item leaves the claimant's hands), and anywhere
    /// it is what the referrer may be told before the final one.
    pub async fn submit(&self, item_id: ItemId, user: &User) -> Result<Report, Error> {
        self.claimed_by_me(item_id, user).await?;
        let Some((id, ReportStatus::Draft, _)) = self.latest(item_id).await? else {
            return Err(Error::Conflict("there is no draft to submit / 无可提交的草稿".into()));
        };
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let impression: String = sqlx::query("SELECT impression FROM reports WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("select draft"))?
            .get(0);
        if impression.trim().is_empty() {
            return Err(Error::Invalid("a report needs an impression before it is submitted / 请填写诊断意见".into()));
        }
        sqlx::query("UPDATE reports SET status = 'preliminary', submitted_at = $1, updated_at = $2 WHERE id = $3 AND status = 'draft'")
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("submit report"))?;
        let moved = Transition::new(item_id, &[ItemState::Claimed], ItemState::Preliminary, EventKind::Submitted, Some(user.id), now)
            .set("lease_expires_at", None::<i64>)
            .only_if("claimed_by =", user.id)
            .apply(&mut tx)
            .await?;
        if !moved {
            return Err(Error::Conflict("the item is no longer claimed by you".into()));
        }
        tx.commit().await?;
        self.report(id).await
    }

    /// Is `user` a senior reader of the item's pool?
    fn senior_of(user: &User, pool_id: PoolId) -> bool {
        user.role == Role::Reader && Scope::of(user) == Scope::Pool(pool_id) && user.seniority == crate::Seniority::Senior
    }

    /// Sign the report final: the item becomes reported and the site can see it.
    /// - a draft: by its claimant, unless the pool requires a senior and they are junior;
    /// - a preliminary report: in a two-level pool by a senior of the pool, else by its
    ///   author or a senior.
    pub async fn sign(&self, item_id: ItemId, user: &User) -> Result<Report, Error> {
        let item = self.item(item_id).await?;
        let two_level = self.two_level(item.pool_id).await?;
        let Some((id, status, author)) = self.latest(item_id).await? else {
            return Err(Error::Conflict("there is no draft to sign: save one first / 请先保存报告草稿".into()));
        };
        let from_state = match status {
            ReportStatus::Draft => {
                self.claimed_by_me(item_id, user).await?;
                if two_level && !Self::senior_of(user, item.pool_id) {
                    return Err(Error::Forbidden(
                        "this pool requires a senior's signature: submit the report as preliminary / 本组需上级医生审核签发".into(),
                    ));
                }
                ItemState::Claimed
            }
            ReportStatus::Preliminary => {
                let allowed = Self::senior_of(user, item.pool_id) || (!two_level && user.id == author);
                if !allowed {
                    return Err(Error::Forbidden("only a senior reader of this pool signs a preliminary report / 仅上级医生可签发".into()));
                }
                ItemState::Preliminary
            }
            ReportStatus::Final | ReportStatus::Superseded => {
                return Err(Error::Conflict("the report is final: add an addendum or issue a correction / 报告已签发".into()))
            }
        };
        // a suggested critical ECG result is decided before the report goes out
        let open = self.open_ecg_suggestions(item_id).await?;
        if open > 0 {
            return Err(Error::Conflict(format!(
                "{open} suggested critical ECG result(s) not decided: confirm or dismiss them first / 请先确认或排除心电图危急值提示"
            )));
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let impression: String = sqlx::query("SELECT impression FROM reports WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("select report"))?
            .get(0);
        if impression.trim().is_empty() {
            return Err(Error::Invalid("a report needs an impression before it is signed / 请填写诊断意见".into()));
        }
        sqlx::query(
            "UPDATE reports SET status = 'final', signer_id = $1, signed_at = $2, updated_at = $3, \
               submitted_at = COALESCE(submitted_at, $4) WHERE id = $5 AND status = $6",
        )
        .bind(user.id)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(Error::db("sign report"))?;
        let moved = Transition::new(item_id, &[from_state], ItemState::Reported, EventKind::Signed, Some(user.id), now)
            .set("new_images_after_report", 0)
            .set("lease_expires_at", None::<i64>)
            .apply(&mut tx)
            .await?;
        if !moved {
            return Err(Error::Conflict("the item changed meanwhile; reload it".into()));
        }
        // to the site's HIS, FHIR server and PACS, with the signature (never without it)
        crate::results::enqueue_results(&mut tx, item.site_id, item_id, id, crate::results::ResultEvent::Signed, now).await?;
        tx.commit().await?;
        // arrival to signed report, the figure the consortium is judged by
        metrics::histogram!("readhub_turnaround_seconds", "priority" => item.priority.as_str())
            .record((now - item.arrived_at).max(0) as f64 / 1000.0);
        self.report(id).await
    }

    /// The preliminary report a senior of the item's pool acts on: (report id, author).
    async fn awaiting_signoff(&self, item_id: ItemId, user: &User) -> Result<(i64, UserId), Error> {
        let item = self.item(item_id).await?;
        if !Self::senior_of(user, item.pool_id) {
            return Err(Error::Forbidden("only a senior reader of this pool acts on a preliminary report / 仅上级医生可审核".into()));
        }
        match self.latest(item_id).await? {
            Some((id, ReportStatus::Preliminary, author)) => Ok((id, author)),
            _ => Err(Error::Conflict("the report is not awaiting sign-off / 报告不在待审核状态".into())),
        }
    }

    /// A senior edits a preliminary report before signing it (recorded as an event).
    pub async fn edit_preliminary(&self, item_id: ItemId, user: &User, findings: &str, impression: &str) -> Result<Report, Error> {
        let (id, _) = self.awaiting_signoff(item_id, user).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE reports SET findings = $1, impression = $2, updated_at = $3 WHERE id = $4 AND status = 'preliminary'")
            .bind(findings)
            .bind(impression)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("edit report"))?;
        record_event(&mut tx, item_id, EventKind::Edited, Some(user.id), now, "").await?;
        tx.commit().await?;
        self.report(id).await
    }

    /// A senior sends a preliminary report back to its author as a draft, with a note.
    pub async fn send_back(&self, item_id: ItemId, user: &User, note: &str) -> Result<Report, Error> {
        let (id, author) = self.awaiting_signoff(item_id, user).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE reports SET status = 'draft', returned_note = $1, updated_at = $2 WHERE id = $3 AND status = 'preliminary'")
            .bind(note)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("send back"))?;
        let moved = Transition::new(item_id, &[ItemState::Preliminary], ItemState::Claimed, EventKind::SentBack, Some(user.id), now)
            .claim_by(Some(author), Some(now + self.config.lease.as_millis() as i64))
            .detail(note)
            .apply(&mut tx)
            .await?;
        if !moved {
            return Err(Error::Conflict("the item changed meanwhile; reload it".into()));
        }
        tx.commit().await?;
        self.report(id).await
    }

    /// The current final report of an item (the one referrers see).
    async fn current_final(&self, item_id: ItemId) -> Result<i64, Error> {
        sqlx::query("SELECT id FROM reports WHERE item_id = $1 AND status = 'final'")
            .bind(item_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select final report"))?
            .map(|r| r.get(0))
            .ok_or_else(|| Error::Conflict("the item has no final report yet / 尚无正式报告".into()))
    }

    /// May `user` change this pool's final reports? A reader of the pool (a senior where
    /// the pool signs at two levels) or an admin... admins do not write reports.
    async fn may_amend(&self, user: &User, pool_id: PoolId) -> Result<(), Error> {
        let reader = user.role == Role::Reader && Scope::of(user) == Scope::Pool(pool_id);
        if !reader || (self.two_level(pool_id).await? && user.seniority != crate::Seniority::Senior) {
            return Err(Error::Forbidden("only a reader of this pool (a senior, where it signs at two levels) amends its reports / 无权修改已签发报告".into()));
        }
        Ok(())
    }

    /// Append a signed addendum to the final report.
    pub async fn addendum(&self, item_id: ItemId, user: &User, text: &str) -> Result<Report, Error> {
        let item = self.item(item_id).await?;
        self.may_amend(user, item.pool_id).await?;
        if text.trim().is_empty() {
            return Err(Error::Invalid("an addendum needs text / 请填写补充内容".into()));
        }
        let report = self.current_final(item_id).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO report_addenda (report_id, item_id, text, author_id, signed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(report)
            .bind(item_id)
            .bind(text.trim())
            .bind(user.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert addendum"))?;
        record_event(&mut tx, item_id, EventKind::Addended, Some(user.id), now, "").await?;
        crate::results::enqueue_results(&mut tx, item.site_id, item_id, report, crate::results::ResultEvent::Addended, now).await?;
        tx.commit().await?;
        self.report(report).await
    }

    /// Issue a correction: a new final version that supersedes the current one, in one
    /// transaction (the old one is marked superseded only if it still is the final one).
    pub async fn correct(&self, item_id: ItemId, user: &User, findings: &str, impression: &str, reason: &str) -> Result<Report, Error> {
        let item = self.item(item_id).await?;
        self.may_amend(user, item.pool_id).await?;
        if impression.trim().is_empty() || reason.trim().is_empty() {
            return Err(Error::Invalid("a correction needs an impression and a reason / 请填写更正内容和原因".into()));
        }
        let old = self.current_final(item_id).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let n = sqlx::query("UPDATE reports SET status = 'superseded', superseded_at = $1, updated_at = $2 WHERE id = $3 AND status = 'final'")
            .bind(now)
            .bind(now)
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("supersede report"))?
            .rows_affected();
        if n != 1 {
            return Err(Error::Conflict("the report was corrected meanwhile; reload it / 报告已被他人更正".into()));
        }
        let version: i64 = sqlx::query("SELECT MAX(version) FROM reports WHERE item_id = $1")
            .bind(item_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::db("select version"))?
            .get(0);
        let id: i64 = sqlx::query(
            "INSERT INTO reports (item_id, study_id, site_id, version, status, findings, impression, author_id, signer_id, \
               created_at, updated_at, signed_at, submitted_at, supersedes, correction_reason) \
             VALUES ($1, $2, $3, $4, 'final', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(item_id)
        .bind(item.study_pk)
        .bind(item.site_id)
        .bind(version + 1)
        .bind(findings)
        .bind(impression)
        .bind(user.id)
        .bind(user.id)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(old)
        .bind(reason.trim())
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("insert correction"))?
        .get(0);
        record_event(&mut tx, item_id, EventKind::Corrected, Some(user.id), now, &format!("report {old} -> {id}: {}", reason.trim())).await?;
        crate::results::enqueue_results(&mut tx, item.site_id, item_id, id, crate::results::ResultEvent::Corrected, now).await?;
        tx.commit().await?;
        self.report(id).await
    }

    /// Load the addenda of these reports (one query).
    async fn with_addenda(&self, mut reports: Vec<Report>) -> Result<Vec<Report>, Error> {
        if reports.is_empty() {
            return Ok(reports);
        }
        let ids: Vec<String> = reports.iter().map(|r| r.id.to_string()).collect();
        // ids are integers we formatted ourselves
        let sql = format!(
            "SELECT ad.id, ad.report_id, ad.text, u.display_name, ad.signed_at FROM report_addenda ad \
             JOIN users u ON u.id = ad.author_id WHERE ad.report_id IN ({}) ORDER BY ad.id",
            ids.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await.map_err(Error::db("select addenda"))?;
        for r in rows {
            let report_id: i64 = r.get(1);
            if let Some(rep) = reports.iter_mut().find(|x| x.id == report_id) {
                rep.addenda.push(Addendum { id: r.get(0), text: r.get(2), author: r.get(3), signed_at: r.get(4) });
            }
        }
        Ok(reports)
    }

    pub async fn report(&self, id: i64) -> Result<Report, Error> {
        let r = sqlx::query(report_select!("WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select report"))?
            .ok_or_else(|| Error::NotFound(format!("report {id}")))?;
        let one = self.with_addenda(vec![report_from_row(&r)?]).await?;
        Ok(one.into_iter().next().expect("one report"))
    }

    /// The latest report of an item (draft, preliminary or final).
    pub async fn report_for_item(&self, item_id: ItemId) -> Result<Option<Report>, Error> {
        let r = sqlx::query(report_select!("WHERE r.item_id = $1 ORDER BY r.version DESC LIMIT 1"))
            .bind(item_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select report"))?;
        match r {
            Some(r) => Ok(self.with_addenda(vec![report_from_row(&r)?]).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    /// Every version of an item's report, oldest first (readers and admins).
    pub async fn report_history(&self, item_id: ItemId) -> Result<Vec<Report>, Error> {
        let rows = sqlx::query(report_select!("WHERE r.item_id = $1 ORDER BY r.version"))
            .bind(item_id)
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list report versions"))?;
        self.with_addenda(rows.iter().map(report_from_row).collect::<Result<_, _>>()?).await
    }

    /// Current final reports of one site (or of all sites: `None`, for admins) that match
    /// the search, newest first after the unread and critical ones; superseded versions are
    /// never listed.
    pub async fn site_reports(&self, site_id: Option<SiteId>, search: &ReportSearch) -> Result<Vec<Report>, Error> {
        // The site's unread reports and those with an unacknowledged critical result come
        // first: that is what a referring doctor must see before anything else.
        let like = search.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(|t| format!("%{}%", t.to_lowercase().replace('%', "").replace('_', "")));
        let rows = sqlx::query(concat!(
            "SELECT * FROM (",
            report_select!(
                "WHERE ($1 IS NULL OR r.site_id = $1) AND r.status = 'final' \
                   AND ($2 IS NULL OR LOWER(p.patient_id) LIKE $2 OR LOWER(COALESCE(p.name, '')) LIKE $2) \
                   AND ($3 IS NULL OR st.study_date >= $3) AND ($4 IS NULL OR st.study_date <= $4) \
                   AND ($6 IS NULL OR p.patient_id = $6) AND ($7 IS NULL OR p.issuer = $7) AND ($8 IS NULL OR p.id = $8)"
            ),
            ") x ORDER BY (x.open_critical_id IS NULL), (x.delivered_at IS NOT NULL), x.signed_at DESC, x.id DESC LIMIT $5"
        ))
        .bind(site_id)
        .bind(like)
        .bind(search.from.clone())
        .bind(search.to.clone())
        .bind(if search.limit > 0 { search.limit } else { 500 })
        .bind(search.patient_id.clone())
        .bind(search.issuer.clone())
        .bind(search.patient_pk)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("list reports"))?;
        self.with_addenda(rows.iter().map(report_from_row).collect::<Result<_, _>>()?).await
    }


    /// The first time someone of the site opens a report version, it has been delivered
    /// (an event with who and when; later views add nothing).
    pub async fn note_delivered(&self, report: &Report, user: &User) -> Result<(), Error> {
        let detail = format!("report {} v{}", report.id, report.version);
        let seen = sqlx::query("SELECT 1 FROM item_events WHERE item_id = $1 AND kind = 'delivered' AND detail = $2")
            .bind(report.item_id)
            .bind(&detail)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select delivery"))?
            .is_some();
        if seen {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        record_event(&mut tx, report.item_id, EventKind::Delivered, Some(user.id), self.now(), &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// May this user read this report? Referrers and technicians: the current final
    /// reports of their own site. Readers: reports of their pool's items. Admins: all.
    pub async fn can_read_report(&self, user: &User, report: &Report) -> Result<bool, Error> {
        let scope = Scope::of(user);
        Ok(match scope {
            Scope::All => true,
            // a site sees the current final reports only, not drafts in the making
            Scope::Site(_) => scope.sees(report.site_id, None) && report.status == ReportStatus::Final,
            Scope::Pool(_) => scope.sees(report.site_id, Some(self.item(report.item_id).await?.pool_id)),
            Scope::Nothing => false,
        })
    }
}
