//! The worklist and report JSON API.

use axum::extract::{Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{AppendHeaders, IntoResponse};
use axum::Json;
use serde::Deserialize;
use worklist::items::ItemView;
use worklist::{Role, Scope, Worklist};

use crate::auth::{require, session_token, Caller, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(State(st): State<AppState>, Json(body): Json<LoginBody>) -> ApiResult<impl IntoResponse> {
    let user = st.worklist.authenticate(&body.username, &body.password).await.map_err(|e| match e {
        worklist::Error::Forbidden(m) => ApiError::Unprocessable(m),
        other => other.into(),
    })?;
    let token = st.worklist.create_session(user.id).await?;
    tracing::info!(user = %user.username, role = %user.role, "login");
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    Ok((
        AppendHeaders([(SET_COOKIE, cookie)]),
        Json(serde_json::json!({ "token": token, "user": user })),
    ))
}

pub async fn logout(State(st): State<AppState>, parts: Parts) -> ApiResult<impl IntoResponse> {
    if let Some(t) = session_token(&parts) {
        st.worklist.end_session(&t).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((AppendHeaders([(SET_COOKIE, cookie)]), Json(serde_json::json!({ "ok": true }))))
}

pub async fn me(caller: Caller) -> Json<worklist::User> {
    Json(caller.0)
}

/// `GET /api/session`: the signed-in user, or null (200 either way: a signed-out browser
/// is not an error).
pub async fn session(caller: Option<Caller>) -> Json<Option<worklist::User>> {
    Json(caller.map(|c| c.0))
}

#[derive(Deserialize)]
pub struct QueueQuery {
    pool: Option<i64>,
    /// first N items of the queue [default 500]
    limit: Option<i64>,
}

/// A reader's pool queue (admins may name any pool).
pub async fn queue(State(st): State<AppState>, caller: Caller, Query(q): Query<QueueQuery>) -> ApiResult<Json<Vec<ItemView>>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    let pool = match (caller.scope(), q.pool) {
        (Scope::All, Some(p)) => p,
        (Scope::All, None) => return Err(ApiError::BadRequest("give ?pool=ID".into())),
        (Scope::Pool(mine), Some(p)) if p != mine => return Err(ApiError::Forbidden("not your pool / 非本阅片组".into())),
        (Scope::Pool(mine), _) => mine,
        _ => return Err(ApiError::Forbidden("you belong to no pool".into())),
    };
    Ok(Json(st.worklist.queue_page(pool, q.limit.unwrap_or(500)).await?))
}

pub(crate) async fn visible_item(w: &Worklist, caller: &Caller, id: i64) -> ApiResult<ItemView> {
    let item = w.item(id).await?;
    if !caller.scope().sees(item.site_id, Some(item.pool_id)) {
        // not 403: do not confirm that another site's item exists
        return Err(ApiError::NotFound(format!("worklist item {id} not found")));
    }
    Ok(item)
}

/// One item with its instances (for the viewer) and its current report.
pub async fn item(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<serde_json::Value>> {
    let item = visible_item(&st.worklist, &caller, id).await?;
    let instances = storage::query::study_instances(&st.storage.db, item.study_pk).await?;
    let report = st.worklist.report_for_item(id).await?;
    let report = match report {
        Some(r) if st.worklist.can_read_report(&caller.0, &r).await? => Some(r),
        _ => None,
    };
    let instances: Vec<_> = instances
        .iter()
        .map(|i| {
            let base = format!(
                "/dicom-web/studies/{}/series/{}/instances/{}",
                i.study_uid, i.series_uid, i.sop_instance_uid
            );
            serde_json::json!({
                "study_instance_uid": i.study_uid,
                "series_instance_uid": i.series_uid,
                "sop_instance_uid": i.sop_instance_uid,
                "sop_class_uid": i.sop_class_uid,
                "modality": i.modality,
                "transfer_syntax_uid": i.transfer_syntax_uid,
                "number_of_frames": i.number_of_frames,
                "rows": i.rows,
                "columns": i.columns,
                "retrieve_url": base,
                "rendered_url": format!("{base}/rendered"),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "item": item, "instances": instances, "report": report })))
}

pub async fn claim(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.claim(id, &caller.0).await?))
}

pub async fn release(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.release(id, &caller.0).await?))
}

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
    Path(id): Path<i64>,
    Json(body): Json<DraftBody>,
) -> ApiResult<Json<worklist::reports::Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.save_draft(id, &caller.0, &body.findings, &body.impression).await?))
}

pub async fn item_report(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<worklist::reports::Report>> {
    visible_item(&st.worklist, &caller, id).await?;
    match st.worklist.report_for_item(id).await? {
        Some(r) if st.worklist.can_read_report(&caller.0, &r).await? => Ok(Json(r)),
        _ => Err(ApiError::NotFound("no report for this item yet / 暂无报告".into())),
    }
}

pub async fn sign(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<worklist::reports::Report>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    let r = st.worklist.sign(id, &caller.0).await?;
    tracing::info!(item = id, report = r.id, reader = %caller.0.username, "report signed final");
    Ok(Json(r))
}

/// What became of a site's studies (technicians, referrers of the site).
pub async fn site_studies(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ItemView>>> {
    require(&caller, &[Role::Technician, Role::Referrer])?;
    let Scope::Site(site) = caller.scope() else {
        return Err(ApiError::Forbidden("you belong to no site".into()));
    };
    Ok(Json(st.worklist.site_items(site).await?))
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
    let search = worklist::reports::ReportSearch { text: q.q, from: date(q.from)?, to: date(q.to)?, limit: q.limit.unwrap_or(500).clamp(1, 2000) };
    Ok(Json(st.worklist.site_reports(site, &search).await?))
}

pub(crate) async fn readable_report(st: &AppState, caller: &Caller, id: i64) -> ApiResult<worklist::reports::Report> {
    let r = st.worklist.report(id).await?;
    if !st.worklist.can_read_report(&caller.0, &r).await? {
        return Err(ApiError::NotFound(format!("report {id} not found")));
    }
    if matches!(caller.0.role, Role::Referrer | Role::Technician) {
        st.worklist.note_delivered(&r, &caller.0).await?;
    }
    Ok(r)
}

pub async fn report(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<worklist::reports::Report>> {
    Ok(Json(readable_report(&st, &caller, id).await?))
}
