//! The reading workflow's levers over HTTP: claim next, lease renewal, reassignment,
//! re-routing, priority, quality rejection, alerts, routing rules and SLA targets.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use worklist::items::ItemView;
use worklist::routing::{Rule, RuleSet};
use worklist::alerts::Alert;
use worklist::{Priority, RejectReason, Role};

use crate::api::visible_item;
use crate::auth::{require, Caller};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

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
pub async fn renew(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<ItemView>> {
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
pub async fn reassign(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<ReassignBody>) -> ApiResult<Json<ItemView>> {
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
pub async fn reroute(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<RouteBody>) -> ApiResult<Json<ItemView>> {
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
pub async fn set_priority(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<PriorityBody>) -> ApiResult<Json<ItemView>> {
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
pub async fn reject(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>, Json(b): Json<RejectBody>) -> ApiResult<Json<ItemView>> {
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
pub async fn events(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<serde_json::Value>> {
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

/// `GET /api/admin/routing-rules`: the current rule set (null before any is installed).
pub async fn routing_rules(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Option<RuleSet>>> {
    require(&caller, &[Role::Admin])?;
    Ok(Json(st.worklist.ruleset().await?))
}

/// `PUT /api/admin/routing-rules [rule, …]`: install a new version; refused (422, every
/// problem named) if a rule points at an unknown pool, site or reader.
pub async fn put_routing_rules(State(st): State<AppState>, caller: Caller, Json(rules): Json<Vec<Rule>>) -> ApiResult<Json<Option<RuleSet>>> {
    require(&caller, &[Role::Admin])?;
    st.worklist.install_rules(&rules, &caller.0.username).await?;
    Ok(Json(st.worklist.ruleset().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaBody {
    stat_minutes: Option<i64>,
    urgent_minutes: Option<i64>,
    routine_minutes: Option<i64>,
}

/// `PUT /api/admin/pools/{pool}/sla {"stat_minutes": 20, …}`: a pool's turnaround targets.
pub async fn put_sla(State(st): State<AppState>, caller: Caller, Path(pool): Path<String>, Json(b): Json<SlaBody>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let pool = st.worklist.pool_by_name(&pool).await?;
    for (p, m) in [(Priority::Stat, b.stat_minutes), (Priority::Urgent, b.urgent_minutes), (Priority::Routine, b.routine_minutes)] {
        if let Some(m) = m {
            st.worklist.set_sla_target(pool.id, p, m).await?;
        }
    }
    let mut out = serde_json::Map::new();
    for p in [Priority::Stat, Priority::Urgent, Priority::Routine] {
        out.insert(format!("{p:?}_minutes").to_lowercase(), (st.worklist.sla_target(pool.id, p).await? / 60_000).into());
    }
    Ok(Json(serde_json::Value::Object(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    name: String,
    /// imaging | ecg
    kind: String,
    /// consortium name; the default consortium when absent
    consortium: Option<String>,
}

/// `POST /api/admin/pools {"name": "ct-specialists", "kind": "imaging"}`
pub async fn add_pool(State(st): State<AppState>, caller: Caller, Json(b): Json<PoolBody>) -> ApiResult<Json<worklist::directory::Pool>> {
    require(&caller, &[Role::Admin])?;
    let kind = worklist::PoolKind::try_from(b.kind.as_str())?;
    let consortium = b.consortium.as_deref().unwrap_or(storage::sites::DEFAULT_CONSORTIUM);
    let cid = storage::sites::consortium_id(&st.storage.db, consortium)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("consortium {consortium:?} does not exist")))?;
    Ok(Json(st.worklist.add_pool(cid, &b.name, kind).await?))
}

/// `GET /api/admin/pools`
pub async fn pools(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<worklist::directory::Pool>>> {
    require(&caller, &[Role::Admin])?;
    Ok(Json(st.worklist.pools().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    name: String,
    ae_titles: Vec<String>,
    /// consortium name (created if new); the default consortium when absent
    consortium: Option<String>,
    /// e.g. GBK, for modalities that send no Specific Character Set
    charset_fallback: Option<String>,
}

/// `GET /api/admin/sites`
pub async fn sites(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<storage::Site>>> {
    require(&caller, &[Role::Admin])?;
    Ok(Json(storage::sites::list_sites(&st.storage.db).await?))
}

/// `POST /api/admin/sites {"name", "ae_titles": [...], "consortium", "charset_fallback"}`
pub async fn add_site(State(st): State<AppState>, caller: Caller, Json(b): Json<SiteBody>) -> ApiResult<Json<storage::Site>> {
    require(&caller, &[Role::Admin])?;
    let consortium = b.consortium.as_deref().unwrap_or(storage::sites::DEFAULT_CONSORTIUM);
    let cid = storage::sites::ensure_consortium(&st.storage.db, consortium).await?;
    Ok(Json(storage::sites::add_site(&st.storage.db, &b.name, cid, &b.ae_titles, b.charset_fallback.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    username: String,
    /// admin | technician | reader | referrer
    role: String,
    password: String,
    display_name: Option<String>,
    /// technicians and referrers
    site: Option<String>,
    /// readers
    pool: Option<String>,
    seniority: Option<String>,
    #[serde(default)]
    supervisor: bool,
    #[serde(default)]
    modalities: Vec<String>,
    duty_hours: Option<String>,
}

/// `GET /api/admin/users`
pub async fn users(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<worklist::User>>> {
    require(&caller, &[Role::Admin])?;
    Ok(Json(st.worklist.users().await?))
}

/// `POST /api/admin/users {"username", "role", "password", "site" | "pool", …}`
pub async fn add_user(State(st): State<AppState>, caller: Caller, Json(b): Json<UserBody>) -> ApiResult<Json<worklist::User>> {
    require(&caller, &[Role::Admin])?;
    let role = Role::try_from(b.role.as_str())?;
    let site = match &b.site {
        Some(s) => Some(
            storage::sites::site_by_name(&st.storage.db, s)
                .await?
                .ok_or_else(|| ApiError::Unprocessable(format!("site {s:?} does not exist")))?
                .id,
        ),
        None => None,
    };
    let pool = match &b.pool {
        Some(p) => Some(st.worklist.pool_by_name(p).await?.id),
        None => None,
    };
    // check the qualifications before the account exists: nothing half-made
    let q = worklist::directory::ReaderQualifications {
        seniority: worklist::Seniority::try_from(b.seniority.as_deref().unwrap_or("junior"))?,
        supervisor: b.supervisor,
        modalities: b.modalities,
        duty_hours: b.duty_hours.filter(|h| !h.trim().is_empty()),
    };
    if let Some(h) = &q.duty_hours {
        worklist::hours::parse_hours(h)?;
    }
    let user = st
        .worklist
        .add_user(&b.username, b.display_name.as_deref().unwrap_or(&b.username), role, site, pool, &b.password)
        .await?;
    if role != Role::Reader {
        return Ok(Json(user));
    }
    Ok(Json(st.worklist.set_qualifications(user.id, &q).await?))
}
