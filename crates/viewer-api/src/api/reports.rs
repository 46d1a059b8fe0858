//! The reports resource: drafts, submission, signature, two-level sign-off, addenda, corrections, history, priors and templates; the site's reports.

use axum::Json;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use crate::AppState;
use crate::auth::Caller;
use crate::auth::require;
use crate::error::ApiError;
use crate::error::ApiResult;
use serde::Deserialize;
use worklist::ItemId;
use worklist::Role;
use worklist::Scope;
use worklist::reports::Report;
use worklist::stats::Prior;
use super::visible_item;

#[derive(Deserialize)]
pub struct DraftBody {
    #[serde(default)]
    findings: String,
    #[serde(default)]
    impression: String,
}

pub async fn save_draft(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<ItemId>,
    Json(body): Json<DraftBody>,
) -> ApiResult<Json<worklist::reports::Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.save_draft(id, &caller.0, &body.findings, &body.impression).await?))
}

pub async fn item_report(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<worklist::reports::Report>> {
    visible_item(&st.worklist, &caller, id).await?;
    match st.worklist.report_for_item(id).await? {
        Some(r) if st.worklist.can_read_report(&caller.0, &r).await? => Ok(Json(r)),
        _ => Err(ApiError::NotFound("no report for this item yet / 暂无报告".into())),
    }
}

pub async fn sign(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<worklist::reports::Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    let r = st.worklist.sign(id, &caller.0).await?;
    tracing::info!(item = %id, report = r.id, reader = %caller.0.username, "report signed final");
    Ok(Json(r))
}

/// The search of `GET /api/reports`.
#[derive(Deserialize)]
pub struct ReportsQuery {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// Final reports the caller may read: their site's (referrers, technicians) or all (admins).
/// `GET /api/reports?q=&from=YYYYMMDD&to=YYYYMMDD&limit=`: the site's reports, unread and
/// unacknowledged critical ones first; `q` matches patient name or ID.
pub async fn reports(State(st): State<AppState>, caller: Caller, Query(q): Query<ReportsQuery>) -> ApiResult<Json<Vec<worklist::reports::Report>>> {
    let date = |d: Option<String>| -> ApiResult<Option<String>> {
        match d.map(|d| d.replace('-', "")).filter(|d| !d.is_empty()) {
            Some(d) if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(d)),
            Some(d) => Err(ApiError::BadRequest(format!("date '{d}' is not YYYYMMDD or YYYY-MM-DD / 日期格式应为 YYYY-MM-DD"))),
            None => Ok(None),
        }
    };
    let site = match caller.scope() {
        Scope::All => None,
        Scope::Site(s) => Some(s),
        Scope::Pool(_) => return Err(ApiError::Forbidden("readers find reports through their worklist items".into())),
        Scope::Nothing => return Err(ApiError::Forbidden("you belong to no site".into())),
    };
    let search = worklist::reports::ReportSearch { text: q.q, from: date(q.from)?, to: date(q.to)?, limit: q.limit.unwrap_or(500).clamp(1, 2000), ..Default::default() };
    Ok(Json(st.worklist.site_reports(site, &search).await?))
}

pub(crate) async fn readable_report(st: &AppState, caller: &Caller, id: i64) -> ApiResult<worklist::reports::Report> {
    let r = st.worklist.report(id).await?;
    if !st.worklist.can_read_report(&caller.0, &r).await? {
        return Err(ApiError::NotFound(format!("report {id} not found")));
    }
    // the site opened it: the report is delivered
    if matches!(caller.scope(), worklist::Scope::Site(_)) {
        st.worklist.note_delivered(&r, &caller.0).await?;
    }
    Ok(r)
}

pub async fn report(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<worklist::reports::Report>> {
    Ok(Json(readable_report(&st, &caller, id).await?))
}

/// `POST /api/worklist/{id}/report/submit`: the draft becomes preliminary.
pub async fn submit(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.submit(id, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    #[serde(default)]
    findings: String,
    #[serde(default)]
    impression: String,
}

/// `PUT /api/worklist/{id}/report/preliminary`: a senior edits before signing.
pub async fn edit_preliminary(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<TextBody>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.edit_preliminary(id, &caller.0, &b.findings, &b.impression).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    #[serde(default)]
    note: String,
}

/// `POST /api/worklist/{id}/report/send-back {"note": …}`: back to the junior as a draft.
pub async fn send_back(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<NoteBody>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.send_back(id, &caller.0, b.note.trim()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddendumBody {
    text: String,
}

/// `POST /api/worklist/{id}/report/addendum {"text": …}`
pub async fn addendum(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<AddendumBody>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.addendum(id, &caller.0, &b.text).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionBody {
    #[serde(default)]
    findings: String,
    impression: String,
    reason: String,
}

/// `POST /api/worklist/{id}/report/correct {"findings", "impression", "reason"}`
pub async fn correct(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<CorrectionBody>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.correct(id, &caller.0, &b.findings, &b.impression, &b.reason).await?))
}

/// `GET /api/worklist/{id}/report/history`: every version (readers of the pool, admins).
pub async fn history(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<Vec<Report>>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.report_history(id).await?))
}

/// `GET /api/worklist/{id}/priors`: the patient's earlier studies and their reports.
pub async fn priors(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<Vec<Prior>>> {
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.priors(id, &caller.0).await?))
}

#[derive(Deserialize)]
pub struct TemplateQuery {
    item: Option<ItemId>,
    modality: Option<String>,
    body_part: Option<String>,
}

/// `GET /api/report-templates?item=ID` (or `?modality=DX&body_part=CHEST`)
pub async fn templates(State(st): State<AppState>, caller: Caller, Query(q): Query<TemplateQuery>) -> ApiResult<Json<serde_json::Value>> {
    let (modalities, body_part) = match q.item {
        Some(id) => {
            let item = visible_item(&st.worklist, &caller, id).await?;
            let series = storage::query::search_series(
                &st.storage.db,
                storage::query::StudyFilter::Site(item.site_id),
                &storage::query::SeriesQuery { study_uid: Some(item.study_instance_uid.to_string()), ..Default::default() },
            )
            .await?;
            (item.modalities, series.iter().find_map(|s| s.body_part.clone()))
        }
        None => (q.modality.unwrap_or_default(), q.body_part),
    };
    Ok(Json(serde_json::to_value(worklist::templates::matching(&modalities, body_part.as_deref())).unwrap_or_default()))
}
