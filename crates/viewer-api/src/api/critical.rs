//! Critical results (危急值): flag, list, acknowledge.

use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use crate::AppState;
use crate::auth::Caller;
use crate::auth::require;
use crate::error::ApiResult;
use serde::Deserialize;
use worklist::Role;
use worklist::critical::CriticalResult;
use super::visible_item;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalBody {
    finding: String,
}

/// `POST /api/worklist/{id}/critical {"finding": …}`: flag a critical result.
pub async fn flag_critical(State(st): State<AppState>, caller: Caller, Path(id): Path<worklist::ItemId>, Json(b): Json<CriticalBody>) -> ApiResult<Json<CriticalResult>> {
    require(&caller, &[Role::Reader])?;
    visible_item(&st.worklist, &caller, id).await?;
    let c = st.worklist.flag_critical(id, &caller.0, &b.finding).await?;
    tracing::warn!(item = %id, critical = c.id, site = %c.site_id, "critical result flagged");
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
