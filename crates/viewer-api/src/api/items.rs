//! The worklist resource: queues, items, claims, the supervisor's levers, quality rejection, the event trail and alerts.

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
use worklist::Priority;
use worklist::RejectReason;
use worklist::Role;
use worklist::Scope;
use worklist::Worklist;
use worklist::{ItemId, PoolId};
use worklist::alerts::Alert;
use worklist::items::ItemView;

#[derive(Deserialize)]
pub struct QueueQuery {
    pool: Option<PoolId>,
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

pub(crate) async fn visible_item(w: &Worklist, caller: &Caller, id: ItemId) -> ApiResult<ItemView> {
    let item = w.item(id).await?;
    if !caller.scope().sees(item.site_id, Some(item.pool_id)) {
        // not 403: do not confirm that another site's item exists
        return Err(ApiError::NotFound(format!("worklist item {id} not found")));
    }
    Ok(item)
}

/// One item with its instances (for the viewer) and its current report.
pub async fn item(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<serde_json::Value>> {
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
    // the request (申请单): the clinical question the reader answers, beside the images
    let order = st.worklist.order_of_item(id).await?;
    Ok(Json(serde_json::json!({ "item": item, "instances": instances, "report": report, "order": order })))
}

pub async fn claim(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.claim(id, &caller.0).await?))
}

pub async fn release(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.release(id, &caller.0).await?))
}

/// What became of a site's studies (technicians, referrers of the site).
pub async fn site_studies(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ItemView>>> {
    require(&caller, &[Role::Technician, Role::Referrer])?;
    let Scope::Site(site) = caller.scope() else {
        return Err(ApiError::Forbidden("you belong to no site".into()));
    };
    Ok(Json(st.worklist.site_items(site).await?))
}

/// `POST /api/worklist/next`: claim the next item of the reader's queue (204 when none).
pub async fn claim_next(State(st): State<AppState>, caller: Caller) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    require(&caller, &[Role::Reader])?;
    Ok(match st.worklist.claim_next(&caller.0).await? {
        Some(item) => Json(item).into_response(),
        None => axum::http::StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST /api/worklist/{id}/renew`: extend the caller's claim.
pub async fn renew(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.renew(id, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReassignBody {
    /// user name of a reader of the item's pool
    reader: String,
}

/// `POST /api/worklist/{id}/reassign {"reader": "…"}` (pool supervisor or admin).
pub async fn reassign(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<ReassignBody>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    let to = st
        .worklist
        .user_by_name(&b.reader)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("user {:?} does not exist", b.reader)))?;
    Ok(Json(st.worklist.reassign(id, to.id, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    pool: String,
}

/// `POST /api/worklist/{id}/route {"pool": "…"}` (admin or the pool's supervisor).
pub async fn reroute(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<RouteBody>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.reroute(id, &b.pool, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityBody {
    priority: String,
}

/// `POST /api/worklist/{id}/priority {"priority": "stat"}`: the site's technician flags a
/// study STAT; a reader or admin escalates.
pub async fn set_priority(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<PriorityBody>) -> ApiResult<Json<ItemView>> {
    visible_item(&st.worklist, &caller, id).await?;
    let p = Priority::parse(&b.priority)?;
    Ok(Json(st.worklist.set_priority(id, p, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// positioning, exposure, motion, artefact, wrong_patient_or_part, incomplete
    reason: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/worklist/{id}/reject {"reason": "motion", "note": "…"}`: back to the site.
pub async fn reject(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>, Json(b): Json<RejectBody>) -> ApiResult<Json<ItemView>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    visible_item(&st.worklist, &caller, id).await?;
    let reason = RejectReason::try_from(b.reason.as_str()).map_err(|_| {
        ApiError::Unprocessable(format!(
            "reason {:?} is not one of positioning, exposure, motion, artefact, wrong_patient_or_part, incomplete",
            b.reason
        ))
    })?;
    Ok(Json(st.worklist.reject(id, reason, b.note.trim(), &caller.0).await?))
}

/// `GET /api/worklist/{id}/events`: the item's trail (actor, time, detail).
pub async fn events(State(st): State<AppState>, caller: Caller, Path(id): Path<ItemId>) -> ApiResult<Json<serde_json::Value>> {
    visible_item(&st.worklist, &caller, id).await?;
    let events = st.worklist.events(id).await?;
    Ok(Json(serde_json::Value::Array(
        events
            .into_iter()
            .map(|(kind, actor, at, detail)| serde_json::json!({ "kind": kind, "actor_id": actor, "at": at, "detail": detail }))
            .collect(),
    )))
}

/// `GET /api/alerts`: what the caller should know about (supervisor: their pool's; site
/// users: their site's; admin: all).
pub async fn alerts(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Alert>>> {
    Ok(Json(st.worklist.alerts(&caller.0).await?))
}

/// `POST /api/alerts/{id}/ack`
pub async fn acknowledge(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Alert>> {
    Ok(Json(st.worklist.acknowledge_alert(id, &caller.0).await?))
}
