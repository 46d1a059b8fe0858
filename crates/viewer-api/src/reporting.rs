//! Report versions (preliminary, senior sign-off, addenda, corrections, history), critical
//! results, priors, templates and turnaround statistics over HTTP.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use worklist::critical::CriticalResult;
use worklist::reports::Report;
use worklist::stats::{GroupBy, Prior, Turnaround};
use worklist::Role;

use crate::api::visible_item;
use crate::auth::{require, Caller};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// `POST /api/worklist/{id}/report/submit`: the draft becomes preliminary.
pub async fn submit(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Report>> {
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
pub async fn edit_preliminary(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<TextBody>) -> ApiResult<Json<Report>> {
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
pub async fn send_back(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<NoteBody>) -> ApiResult<Json<Report>> {
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
pub async fn addendum(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<AddendumBody>) -> ApiResult<Json<Report>> {
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
pub async fn correct(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<CorrectionBody>) -> ApiResult<Json<Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.correct(id, &caller.0, &b.findings, &b.impression, &b.reason).await?))
}

/// `GET /api/worklist/{id}/report/history`: every version (readers of the pool, admins).
pub async fn history(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Vec<Report>>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.report_history(id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalBody {
    finding: String,
}

/// `POST /api/worklist/{id}/critical {"finding": …}`: flag a critical result.
pub async fn flag_critical(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<CriticalBody>) -> ApiResult<Json<CriticalResult>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    let c = st.worklist.flag_critical(id, &caller.0, &b.finding).await?;
    tracing::warn!(item = id, critical = c.id, site = c.site_id, "critical result flagged");
    Ok(Json(c))
}

/// `GET /api/critical`: the critical results the caller may see, unacknowledged first.
pub async fn critical_results(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<CriticalResult>>> {
    Ok(Json(st.worklist.critical_results(&caller.0).await?))
}

/// `POST /api/critical/{id}/ack`: the referring site acknowledges.
pub async fn acknowledge_critical(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<CriticalResult>> {
    Ok(Json(st.worklist.acknowledge_critical(id, &caller.0).await?))
}

/// `GET /api/worklist/{id}/priors`: the patient's earlier studies and their reports.
pub async fn priors(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Vec<Prior>>> {
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.priors(id).await?))
}

#[derive(Deserialize)]
pub struct TemplateQuery {
    item: Option<i64>,
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
                &storage::query::SeriesQuery { study_uid: Some(item.study_instance_uid.clone()), ..Default::default() },
            )
            .await?;
            (item.modalities, series.iter().find_map(|s| s.body_part.clone()))
        }
        None => (q.modality.unwrap_or_default(), q.body_part),
    };
    Ok(Json(serde_json::to_value(worklist::templates::matching(&modalities, body_part.as_deref())).unwrap_or_default()))
}

#[derive(Deserialize)]
pub struct TurnaroundQuery {
    /// YYYY-MM-DD (local), inclusive
    from: String,
    /// YYYY-MM-DD (local), inclusive
    to: String,
    /// site | pool | reader | day
    #[serde(default = "default_by")]
    by: String,
}

fn default_by() -> String {
    "site".into()
}

/// `GET /api/stats/turnaround?from=2026-11-01&to=2026-11-30&by=site` (admins).
pub async fn turnaround(State(st): State<AppState>, caller: Caller, Query(q): Query<TurnaroundQuery>) -> ApiResult<Json<Vec<Turnaround>>> {
    require(&caller, &[Role::Admin])?;
    let offset = st.worklist.config.utc_offset_hours as i64 * 3_600_000;
    let day = |s: &str| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis() - offset)
            .map_err(|_| ApiError::BadRequest(format!("date {s:?} is not YYYY-MM-DD")))
    };
    let (from, to) = (day(&q.from)?, day(&q.to)? + 86_400_000);
    let by = GroupBy::parse(&q.by)?;
    Ok(Json(st.worklist.turnaround(from, to, by).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: Option<String>,
}

/// `PUT /api/admin/sites/{name}/webhook {"url": "https://…"}` (null clears it)
pub async fn set_webhook(State(st): State<AppState>, caller: Caller, Path(name): Path<String>, Json(b): Json<WebhookBody>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let site = storage::sites::site_by_name(&st.storage.db, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site {name:?} not found")))?;
    st.worklist.set_site_webhook(site.id, b.url.as_deref()).await?;
    Ok(Json(serde_json::json!({ "site": site.name, "webhook_url": b.url })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    two_level_signoff: Option<bool>,
    auto_assign: Option<bool>,
}

/// `PUT /api/admin/pools/{pool} {"two_level_signoff": true}`
pub async fn pool_settings(State(st): State<AppState>, caller: Caller, Path(pool): Path<String>, Json(b): Json<PoolSettings>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let pool = st.worklist.pool_by_name(&pool).await?;
    if let Some(on) = b.two_level_signoff {
        st.worklist.set_pool_flag(pool.id, worklist::directory::PoolFlag::TwoLevelSignoff, on).await?;
    }
    if let Some(on) = b.auto_assign {
        st.worklist.set_pool_flag(pool.id, worklist::directory::PoolFlag::AutoAssign, on).await?;
    }
    Ok(Json(serde_json::json!({ "pool": pool.name, "two_level_signoff": st.worklist.two_level(pool.id).await?, "auto_assign": b.auto_assign })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qualifications {
    /// junior | senior
    seniority: Option<String>,
    supervisor: Option<bool>,
    /// modalities read (empty: all)
    modalities: Option<Vec<String>>,
    /// daily duty hours, local `FROM-TO` (empty or null: always)
    duty_hours: Option<String>,
}

/// `PUT /api/admin/users/{name}/qualifications {"seniority", "supervisor", "modalities", "duty_hours"}`
pub async fn qualifications(State(st): State<AppState>, caller: Caller, Path(name): Path<String>, Json(b): Json<Qualifications>) -> ApiResult<Json<worklist::User>> {
    require(&caller, &[Role::Admin])?;
    let user = st.worklist.user_by_name(&name).await?.ok_or_else(|| ApiError::NotFound(format!("user {name:?} not found")))?;
    let mut q = worklist::directory::ReaderQualifications::from(&user);
    if let Some(s) = &b.seniority {
        q.seniority = worklist::Seniority::try_from(s.as_str())?;
    }
    q.supervisor = b.supervisor.unwrap_or(q.supervisor);
    q.modalities = b.modalities.unwrap_or(q.modalities);
    if let Some(h) = b.duty_hours {
        q.duty_hours = Some(h).filter(|h| !h.trim().is_empty());
    }
    Ok(Json(st.worklist.set_qualifications(user.id, &q).await?))
}
