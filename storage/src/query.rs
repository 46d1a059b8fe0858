//! Read paths of the index: scoped study search (QIDO-RS) and instance lookup (WADO-RS).
//! Every query takes a [`StudyFilter`]: sites are tenants, and a caller sees only their part.

use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::{Arguments, Row};

use readhub_types::{SeriesUid, SiteId, SopInstanceUid, StudyPk, StudyUid};

use crate::{Db, Error};

/// Which studies a query may return. The caller (the worklist's visibility rule) decides;
/// storage only applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyFilter {
    /// every study
    All,
    /// the studies of one site
    Site(SiteId),
    /// the studies another module selects (a reading pool's), see [`StudySelection`]
    Selected(StudySelection),
    /// none
    Nothing,
}

/// A set of studies chosen by a query that belongs to another module (e.g. "the studies
/// routed to pool 7"): a fixed `SELECT study_id …` with one `?` for its one key. Storage
/// applies it as `studies.id IN (…)` without knowing the tables it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudySelection {
    subquery: &'static str,
    key: i64,
}

impl StudySelection {
    pub const fn new(subquery: &'static str, key: i64) -> Self {
        StudySelection { subquery, key }
    }
}

/// Study-level search keys (PS3.18 10.6, the subset this index answers).
#[derive(Debug, Clone, Default)]
pub struct StudyQuery {
    pub study_uids: Vec<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub accession_number: Option<String>,
    /// `YYYYMMDD`, `YYYYMMDD-`, `-YYYYMMDD` or `YYYYMMDD-YYYYMMDD`
    pub study_date: Option<String>,
    pub modalities_in_study: Vec<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// One study as QIDO-RS reports it.
#[derive(Debug, Clone, Serialize)]
pub struct StudyRow {
    pub pk: StudyPk,
    pub site_id: SiteId,
    pub study_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician: Option<String>,
    pub modalities: Vec<String>,
    pub num_series: i64,
    pub num_instances: i64,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
}

/// One stored instance (its current version).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub pk: i64,
    pub site_id: SiteId,
    pub study_pk: StudyPk,
    pub study_uid: StudyUid,
    pub series_uid: SeriesUid,
    pub sop_instance_uid: SopInstanceUid,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub instance_number: Option<String>,
    pub number_of_frames: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub modality: Option<String>,
    pub blob_key: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub version: i64,
}

/// Escape LIKE metacharacters and turn DICOM wildcards (`*`, `?`) into SQL ones.
fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '*' => out.push('%'),
            '?' => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

fn has_wildcard(v: &str) -> bool {
    v.contains('*') || v.contains('?')
}

struct Sql {
    text: String,
    args: AnyArguments,
    n: usize,
    /// SQLite's LIKE is case-insensitive and never uses an index: a wildcard with a
    /// literal prefix also gets a byte-order range on the column (exact under SQLite's
    /// BINARY collation). PostgreSQL's planner does that itself on a text_pattern_ops index.
    prefix_ranges: bool,
}

impl Sql {
    fn new(db: &Db, base: &str) -> Self {
        Sql {
            text: base.to_string(),
            args: AnyArguments::default(),
            n: 0,
            prefix_ranges: db.backend() == crate::db::Backend::Sqlite,
        }
    }
    fn bind<T>(&mut self, v: T) -> String
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.n += 1;
        self.args.add(v).expect("bind argument");
        format!("${}", self.n)
    }
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

fn scope_clause(sql: &mut Sql, scope: StudyFilter) {
    match scope {
        StudyFilter::All => {}
        StudyFilter::Site(site) => {
            let p = sql.bind(site);
            sql.push(&format!(" AND st.site_id = {p}"));
        }
        StudyFilter::Selected(sel) => {
            let p = sql.bind(sel.key);
            sql.push(&format!(" AND st.id IN ({})", sel.subquery.replacen('?', &p, 1)));
        }
        StudyFilter::Nothing => sql.push(" AND 1 = 0"),
    }
}

/// `AND column >= prefix AND column < prefix+U+10FFFF` for a wildcard value with a literal
/// prefix, where the backend needs it to use an index (see [`Sql::prefix_ranges`]).
fn prefix_range(sql: &mut Sql, column: &str, value: &str) {
    let prefix: String = value.chars().take_while(|c| *c != '*' && *c != '?').collect();
    if sql.prefix_ranges && !prefix.is_empty() {
        let lo = sql.bind(prefix.clone());
        let hi = sql.bind(format!("{prefix}\u{10FFFF}"));
        sql.push(&format!(" AND {column} >= {lo} AND {column} < {hi}"));
    }
}

/// Text matching as QIDO does it: wildcards if present, else exact (names case-insensitively).
fn match_clause(sql: &mut Sql, column: &str, value: &str) {
    if has_wildcard(value) {
        prefix_range(sql, column, value);
        let p = sql.bind(like_pattern(value));
        sql.push(&format!(" AND {column} LIKE {p} ESCAPE '\\'"));
    } else {
        let p = sql.bind(value.to_string());
        sql.push(&format!(" AND {column} = {p}"));
    }
}

fn date_clause(sql: &mut Sql, range: &str) -> Result<(), Error> {
    let valid = |d: &str| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
    let (from, to) = match range.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (range.trim(), range.trim()),
    };
    if (!from.is_empty() && !valid(from)) || (!to.is_empty() && !valid(to)) || (from.is_empty() && to.is_empty()) {
        return Err(Error::Invalid(format!("StudyDate {range:?} is not YYYYMMDD or a YYYYMMDD-YYYYMMDD range")));
    }
    if !from.is_empty() {
        let p = sql.bind(from.to_string());
        sql.push(&format!(" AND st.study_date >= {p}"));
    }
    if !to.is_empty() {
        let p = sql.bind(to.to_string());
        sql.push(&format!(" AND st.study_date <= {p}"));
    }
    Ok(())
}

/// Search studies within `scope`.
pub async fn search_studies(db: &Db, scope: StudyFilter, q: &StudyQuery) -> Result<Vec<StudyRow>, Error> {
    let mut sql = Sql::new(db, 
        "SELECT st.id, st.site_id, st.study_uid, st.study_date, st.study_time, st.accession_number, st.study_id, \
           st.study_description, st.referring_physician, st.modalities, st.num_series, st.num_instances, \
           p.patient_id, p.issuer, p.name, p.birth_date, p.sex \
         FROM studies st JOIN patients p ON p.id = st.patient_id WHERE 1 = 1",
    );
    scope_clause(&mut sql, scope);
    uid_list(&mut sql, "st.study_uid", &q.study_uids);
    if let Some(v) = &q.patient_id {
        match_clause(&mut sql, "p.patient_id", v);
    }
    if let Some(v) = &q.issuer_of_patient_id {
        match_clause(&mut sql, "p.issuer", v);
    }
    if let Some(v) = &q.accession_number {
        match_clause(&mut sql, "st.accession_number", v);
    }
    if let Some(v) = &q.study_date {
        date_clause(&mut sql, v)?;
    }
    if let Some(name) = &q.patient_name {
        // any stored term (whole value or one component group) matches, case-insensitively
        // driven from the term index (not one probe per patient): the matching patients
        let upper = name.to_uppercase();
        sql.push(" AND p.id IN (SELECT t.patient_id FROM patient_name_terms t WHERE 1 = 1");
        if has_wildcard(&upper) {
            prefix_range(&mut sql, "t.term", &upper);
            let p = sql.bind(like_pattern(&upper));
            sql.push(&format!(" AND t.term LIKE {p} ESCAPE '\\')"));
        } else {
            let p = sql.bind(upper);
            sql.push(&format!(" AND t.term = {p})"));
        }
    }
    for m in &q.modalities_in_study {
        let p = sql.bind(m.clone());
        sql.push(&format!(" AND EXISTS (SELECT 1 FROM series se WHERE se.study_id = st.id AND se.modality = {p})"));
    }
    sql.push(" ORDER BY st.study_date DESC, st.id DESC");
    paging(&mut sql, q.limit, q.offset);
    let Sql { text, args, .. } = sql;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("search studies"))?;
    Ok(rows
        .iter()
        .map(|r| StudyRow {
            pk: r.get(0),
            site_id: r.get(1),
            study_uid: r.get(2),
            study_date: r.get(3),
            study_time: r.get(4),
            accession_number: r.get(5),
            study_id: r.get(6),
            study_description: r.get(7),
            referring_physician: r.get(8),
            modalities: r
                .get::<String, _>(9)
                .split('\\')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            num_series: r.get(10),
            num_instances: r.get(11),
            patient_id: r.get(12),
            issuer_of_patient_id: r.get(13),
            patient_name: r.get(14),
            patient_birth_date: r.get(15),
            patient_sex: r.get(16),
        })
        .collect())
}

macro_rules! instance_select {
    ($rest:literal) => {
        concat!(
            "SELECT i.id, i.site_id, i.study_id, st.study_uid, se.series_uid, i.sop_instance_uid, i.sop_class_uid, \
               i.transfer_syntax_uid, i.instance_number, i.number_of_frames, i.rows_, i.columns_, se.modality, \
               i.blob_key, i.size_bytes, i.sha256, i.version \
             FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = i.study_id \
             WHERE i.is_current = 1 ",
            $rest
        )
    };
}

fn instance_from_row(r: &sqlx::any::AnyRow) -> InstanceRow {
    InstanceRow {
        pk: r.get(0),
        site_id: r.get(1),
        study_pk: r.get(2),
        study_uid: r.get(3),
        series_uid: r.get(4),
        sop_instance_uid: r.get(5),
        sop_class_uid: r.get(6),
        transfer_syntax_uid: r.get(7),
        instance_number: r.get(8),
        number_of_frames: r.get(9),
        rows: r.get(10),
        columns: r.get(11),
        modality: r.get(12),
        blob_key: r.get(13),
        size_bytes: r.get(14),
        sha256: r.get(15),
        version: r.get(16),
    }
}

/// The current version of an instance, if the caller may see it.
pub async fn find_instance(
    db: &Db,
    scope: StudyFilter,
    study_uid: &StudyUid,
    series_uid: &SeriesUid,
    sop_instance_uid: &SopInstanceUid,
) -> Result<Option<InstanceRow>, Error> {
    let mut sql = Sql::new(db, instance_select!(""));
    scope_clause(&mut sql, scope);
    let (a, b, c) = (sql.bind(study_uid.to_string()), sql.bind(series_uid.to_string()), sql.bind(sop_instance_uid.to_string()));
    sql.push(&format!(" AND st.study_uid = {a} AND se.series_uid = {b} AND i.sop_instance_uid = {c} ORDER BY i.site_id LIMIT 1"));
    let Sql { text, args, .. } = sql;
    let row = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select instance"))?;
    Ok(row.as_ref().map(instance_from_row))
}

/// The current instances of a study (by its index key), in series and instance order.
pub async fn study_instances(db: &Db, study_pk: StudyPk) -> Result<Vec<InstanceRow>, Error> {
    let rows = sqlx::query(instance_select!(
        "AND i.study_id = $1 ORDER BY se.id, i.id"
    ))
    .bind(study_pk)
    .fetch_all(db.pool())
    .await
    .map_err(Error::db("list study instances"))?;
    let mut out: Vec<InstanceRow> = rows.iter().map(instance_from_row).collect();
    // Instance Number is IS (text): order numerically, within each series, stable otherwise
    let mut series_order: Vec<SeriesUid> = Vec::new();
    for r in &out {
        if !series_order.contains(&r.series_uid) {
            series_order.push(r.series_uid.clone());
        }
    }
    out.sort_by_key(|r| {
        (
            series_order.iter().position(|s| *s == r.series_uid),
            r.instance_number.as_deref().and_then(|n| n.trim().parse::<i64>().ok()).unwrap_or(i64::MAX),
            r.pk,
        )
    });
    Ok(out)
}

/// Series-level search keys.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    pub study_uid: Option<String>,
    pub series_uids: Vec<String>,
    pub modality: Option<String>,
    pub series_number: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// One series as QIDO-RS reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    pub pk: i64,
    pub study_uid: String,
    pub series_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<String>,
    pub series_description: Option<String>,
    pub body_part: Option<String>,
    pub num_instances: i64,
}

fn paging(sql: &mut Sql, limit: Option<i64>, offset: Option<i64>) {
    let p = sql.bind(limit.unwrap_or(1000).clamp(1, 10_000));
    sql.push(&format!(" LIMIT {p}"));
    let p = sql.bind(offset.unwrap_or(0).max(0));
    sql.push(&format!(" OFFSET {p}"));
}

fn uid_list(sql: &mut Sql, column: &str, uids: &[String]) {
    if !uids.is_empty() {
        let ps: Vec<String> = uids.iter().map(|u| sql.bind(u.clone())).collect();
        sql.push(&format!(" AND {column} IN ({})", ps.join(", ")));
    }
}

/// Search series within `scope` (optionally within one study).
pub async fn search_series(db: &Db, scope: StudyFilter, q: &SeriesQuery) -> Result<Vec<SeriesRow>, Error> {
    let mut sql = Sql::new(db, 
        "SELECT st.study_uid, se.series_uid, se.modality, se.series_number, se.series_description, se.body_part, \
           se.num_instances, se.id \
         FROM series se JOIN studies st ON st.id = se.study_id WHERE se.num_instances > 0",
    );
    scope_clause(&mut sql, scope);
    if let Some(s) = &q.study_uid {
        let p = sql.bind(s.clone());
        sql.push(&format!(" AND st.study_uid = {p}"));
    }
    uid_list(&mut sql, "se.series_uid", &q.series_uids);
    if let Some(m) = &q.modality {
        match_clause(&mut sql, "se.modality", m);
    }
    if let Some(n) = &q.series_number {
        match_clause(&mut sql, "se.series_number", n);
    }
    sql.push(" ORDER BY st.id, se.id");
    paging(&mut sql, q.limit, q.offset);
    let Sql { text, args, .. } = sql;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("search series"))?;
    Ok(rows
        .iter()
        .map(|r| SeriesRow {
            study_uid: r.get(0),
            series_uid: r.get(1),
            modality: r.get(2),
            series_number: r.get(3),
            series_description: r.get(4),
            body_part: r.get(5),
            num_instances: r.get(6),
            pk: r.get(7),
        })
        .collect())
}

/// Instance-level search keys.
#[derive(Debug, Clone, Default)]
pub struct InstanceQuery {
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub sop_instance_uids: Vec<String>,
    pub sop_class_uid: Option<String>,
    pub instance_number: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Search the current instances within `scope`.
pub async fn search_instances(db: &Db, scope: StudyFilter, q: &InstanceQuery) -> Result<Vec<InstanceRow>, Error> {
    let mut sql = Sql::new(db, 
        "SELECT i.id, i.site_id, i.study_id, st.study_uid, se.series_uid, i.sop_instance_uid, i.sop_class_uid, \
           i.transfer_syntax_uid, i.instance_number, i.number_of_frames, i.rows_, i.columns_, se.modality, \
           i.blob_key, i.size_bytes, i.sha256, i.version \
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = i.study_id \
         WHERE i.is_current = 1",
    );
    scope_clause(&mut sql, scope);
    if let Some(s) = &q.study_uid {
        let p = sql.bind(s.clone());
        sql.push(&format!(" AND st.study_uid = {p}"));
    }
    if let Some(s) = &q.series_uid {
        let p = sql.bind(s.clone());
        sql.push(&format!(" AND se.series_uid = {p}"));
    }
    uid_list(&mut sql, "i.sop_instance_uid", &q.sop_instance_uids);
    if let Some(c) = &q.sop_class_uid {
        let p = sql.bind(c.clone());
        sql.push(&format!(" AND i.sop_class_uid = {p}"));
    }
    if let Some(n) = &q.instance_number {
        match_clause(&mut sql, "i.instance_number", n);
    }
    sql.push(" ORDER BY st.id, se.id, i.id");
    paging(&mut sql, q.limit, q.offset);
    let Sql { text, args, .. } = sql;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("search instances"))?;
    Ok(rows.iter().map(instance_from_row).collect())
}

/// Cached DICOM JSON of the current instances of a study (optionally one series or one
/// instance), with their UIDs: one query, no blob reads.
pub async fn metadata(
    db: &Db,
    scope: StudyFilter,
    study_uid: &str,
    series_uid: Option<&str>,
    sop_instance_uid: Option<&str>,
) -> Result<Vec<(String, String, String, String)>, Error> {
    let mut sql = Sql::new(db, 
        "SELECT st.study_uid, se.series_uid, i.sop_instance_uid, i.metadata_json \
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = i.study_id \
         WHERE i.is_current = 1 AND i.metadata_json IS NOT NULL",
    );
    scope_clause(&mut sql, scope);
    let p = sql.bind(study_uid.to_string());
    sql.push(&format!(" AND st.study_uid = {p}"));
    if let Some(s) = series_uid {
        let p = sql.bind(s.to_string());
        sql.push(&format!(" AND se.series_uid = {p}"));
    }
    if let Some(s) = sop_instance_uid {
        let p = sql.bind(s.to_string());
        sql.push(&format!(" AND i.sop_instance_uid = {p}"));
    }
    sql.push(" ORDER BY se.id, i.id");
    let Sql { text, args, .. } = sql;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select metadata"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// What a representative instance stands for in [`representative_metadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Study,
    Series,
    Instance,
}

/// The cached DICOM JSON of one current instance per study, series or instance key (the
/// first one stored), for QIDO's `includefield`: attributes the index has no column for
/// are read from it. Keys are primary keys of the level; one query.
pub async fn representative_metadata(
    db: &Db,
    level: Level,
    pks: &[i64],
) -> Result<std::collections::HashMap<i64, Representative>, Error> {
    if pks.is_empty() {
        return Ok(Default::default());
    }
    let column = match level {
        Level::Study => "study_id",
        Level::Series => "series_id",
        Level::Instance => "id",
    };
    let mut sql = Sql::new(db, &format!(
        "SELECT i.{column}, i.metadata_json, st.study_uid, se.series_uid, i.sop_instance_uid \
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = i.study_id \
         WHERE i.id IN \
         (SELECT MIN(j.id) FROM instances j WHERE j.is_current = 1 AND j.metadata_json IS NOT NULL AND j.{column} IN ("
    ));
    let ps: Vec<String> = pks.iter().map(|pk| sql.bind(*pk)).collect();
    sql.push(&ps.join(", "));
    sql.push(&format!(") GROUP BY j.{column})"));
    let Sql { text, args, .. } = sql;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select representative metadata"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let rep = Representative { metadata_json: r.get(1), study_uid: r.get(2), series_uid: r.get(3), sop_instance_uid: r.get(4) };
            (r.get(0), rep)
        })
        .collect())
}

/// One instance's cached DICOM JSON and where it lives (its BulkDataURIs point there).
#[derive(Debug, Clone)]
pub struct Representative {
    pub metadata_json: String,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
}

/// Which of these SOP Instance UIDs the site holds (current), with their SOP Class: for
/// Storage Commitment (what is in the index is durable, PS3.4 J.3). Asked 500 at a time.
pub async fn held_by_site(db: &Db, site: SiteId, sop_instance_uids: &[String]) -> Result<std::collections::HashMap<String, (String, StudyPk)>, Error> {
    let mut held = std::collections::HashMap::new();
    for chunk in sop_instance_uids.chunks(500) {
        let mut sql = Sql::new(db, "SELECT sop_instance_uid, sop_class_uid, study_id FROM instances WHERE is_current = 1");
        let p = sql.bind(site);
        sql.push(&format!(" AND site_id = {p} AND sop_instance_uid IN ("));
        for (k, uid) in chunk.iter().enumerate() {
            let p = sql.bind(uid.clone());
            sql.push(&format!("{}{p}", if k == 0 { "" } else { ", " }));
        }
        sql.push(")");
        let Sql { text, args, .. } = sql;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(text), args)
            .fetch_all(db.pool())
            .await
            .map_err(Error::db("instances held by site"))?;
        for r in rows {
            held.insert(r.get(0), (r.get(1), r.get(2)));
        }
    }
    Ok(held)
}

/// A patient as the index holds it (FHIR `Patient/{pk}`).
#[derive(Debug, Clone, Serialize)]
pub struct PatientRow {
    pub pk: i64,
    pub site_id: SiteId,
    pub patient_id: String,
    pub issuer: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
}

/// One patient by its row, within `scope` (a site's, or any for `All`; none otherwise).
pub async fn patient(db: &Db, scope: StudyFilter, pk: i64) -> Result<Option<PatientRow>, Error> {
    let row = sqlx::query(
        "SELECT id, site_id, patient_id, issuer, COALESCE(name, ''), COALESCE(birth_date, ''), COALESCE(sex, '') FROM patients WHERE id = $1",
    )
    .bind(pk)
    .fetch_optional(db.pool())
    .await
    .map_err(Error::db("select patient"))?;
    let Some(r) = row else { return Ok(None) };
    let p = PatientRow { pk: r.get(0), site_id: r.get(1), patient_id: r.get(2), issuer: r.get(3), name: r.get(4), birth_date: r.get(5), sex: r.get(6) };
    Ok(match scope {
        StudyFilter::All => Some(p),
        StudyFilter::Site(s) if s == p.site_id => Some(p),
        _ => None,
    })
}

/// The patient row of a site's study.
pub async fn patient_of_study(db: &Db, site: SiteId, study_uid: &str) -> Result<Option<i64>, Error> {
    Ok(sqlx::query("SELECT patient_id FROM studies WHERE site_id = $1 AND study_uid = $2")
        .bind(site)
        .bind(study_uid)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select study patient"))?
        .map(|r| r.get(0)))
}

/// Does the site hold these very bytes of an instance, as any of its versions (`readhub
/// import` skips such a file: a re-run must not turn an older version into a newer one)?
pub async fn holds_bytes(db: &Db, site: SiteId, sop_instance_uid: &str, sha256: &str) -> Result<bool, Error> {
    let row = sqlx::query("SELECT 1 FROM instances WHERE site_id = $1 AND sop_instance_uid = $2 AND sha256 = $3")
        .bind(site)
        .bind(sop_instance_uid)
        .bind(sha256)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select instance hash"))?;
    Ok(row.is_some())
}
