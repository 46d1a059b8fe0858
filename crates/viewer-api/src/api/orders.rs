//! Orders (检查申请) over the JSON API: a site's orders for its staff (what is scheduled,
//! what came, what is overdue), and the technician desk's 登记 form for a site without a
//! HIS. What an order is and does is `worklist::orders`; HL7 orders come by MLLP.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use worklist::orders::{NewOrder, Order, OrderState};
use worklist::{Role, Scope};

use crate::auth::{require, Caller};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<OrderState>,
    limit: Option<i64>,
}

/// `GET /api/orders[?state=scheduled|arrived|cancelled]`: a site's staff see their site's
/// orders, admins all; readers see an order beside its item instead.
pub async fn list(State(st): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<Order>>> {
    require(&caller, &[Role::Admin, Role::Technician, Role::Referrer])?;
    Ok(Json(st.worklist.list_orders(caller.scope(), q.state, q.limit.unwrap_or(200)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteQuery {
    site: Option<String>,
}

/// The site an order is placed for: a technician's own; an admin names it.
async fn site_of(st: &AppState, caller: &Caller, q: &SiteQuery) -> Result<storage::Site, ApiError> {
    let site = match (caller.0.role, caller.scope(), &q.site) {
        (Role::Technician, Scope::Site(id), _) => storage::sites::get_site(&st.storage.db, id).await?,
        (Role::Admin, Scope::All, Some(name)) => storage::sites::site_by_name(&st.storage.db, name).await?,
        (Role::Admin, Scope::All, None) => return Err(ApiError::BadRequest("an admin places an order for a site: add ?site=NAME".into())),
        _ => return Err(ApiError::Forbidden("only a site's technicians (or an admin) register orders / 仅技师可登记".into())),
    };
    site.ok_or_else(|| ApiError::NotFound("site not found".into()))
}

/// `POST /api/orders[?site=NAME]` with an order (JSON): 登记 at the technician's desk. 201
/// with the order; 409 for an accession number the site already has; 422 naming the field.
pub async fn place(State(st): State<AppState>, caller: Caller, Query(q): Query<SiteQuery>, Json(order): Json<NewOrder>) -> ApiResult<(StatusCode, Json<Order>)> {
    let site = site_of(&st, &caller, &q).await?;
    let placed = st.worklist.place_order(site.id, order, &format!("desk:{}", caller.0.username)).await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

/// `POST /api/orders/{id}/cancel`: the site withdraws a scheduled order.
pub async fn cancel(State(st): State<AppState>, caller: Caller, Path(id): Path<readhub_types::OrderId>) -> ApiResult<Json<Order>> {
    require(&caller, &[Role::Admin, Role::Technician])?;
    let order = st.worklist.order(id).await?.filter(|o| caller.scope().sees(o.site_id, None));
    let order = order.ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
    Ok(Json(st.worklist.cancel_order(order.site_id, &order.accession_number).await?))
}
