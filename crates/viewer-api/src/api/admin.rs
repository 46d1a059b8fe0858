//! Administration: routing rules, pools and their SLA targets and sign-off, sites and their webhooks, users and their qualifications, turnaround statistics.

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
use worklist::Role;
use worklist::routing::Rule;
use worklist::routing::RuleSet;
use worklist::stats::GroupBy;
use worklist::stats::Turnaround;

/// The site a route names, or 404.
async fn site_named(st: &AppState, name: &str) -> Result<storage::Site, ApiError> {
    storage::sites::site_by_name(&st.storage.db, name).await?.ok_or_else(|| ApiError::NotFound(format!("site {name:?} not found")))
}

/// The user a route names, or 404.
async fn user_named(st: &AppState, name: &str) -> Result<worklist::User, ApiError> {
    st.worklist.user_by_name(name).await?.ok_or_else(|| ApiError::NotFound(format!("user {name:?} not found")))
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
pub async fn sites(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<serde_json::Value>>> {
    require(&caller, &[Role::Admin])?;
    let mut out = Vec::new();
    for site in storage::sites::list_sites(&st.storage.db).await? {
        // the client certificates the site is bound to (DICOM TLS only when any)
        let certificates = storage::sites::certificates_of(&st.storage.db, site.id).await?;
        let mut v = serde_json::to_value(site).unwrap_or_default();
        v["certificates"] = serde_json::json!(certificates);
        out.push(v);
    }
    Ok(Json(out))
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
pub async fn users(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<serde_json::Value>>> {
    require(&caller, &[Role::Admin])?;
    let disabled = st.worklist.disabled_usernames().await?;
    let users = st.worklist.users().await?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| {
                let off = disabled.contains(&u.username);
                let mut v = serde_json::to_value(u).unwrap_or_default();
                v["disabled"] = serde_json::Value::Bool(off);
                v
            })
            .collect(),
    ))
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
    let site = site_named(&st, &name).await?;
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
#[derive(Deserialize)]
pub struct Disabled {
    disabled: bool,
}

/// `PUT /api/admin/users/{name}/disabled` `{"disabled": true}`: disable an account (its
/// sessions and cached credentials end at once) or enable it again.
pub async fn set_disabled(State(st): State<AppState>, caller: Caller, Path(name): Path<String>, Json(b): Json<Disabled>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let user = user_named(&st, &name).await?;
    st.worklist.set_disabled(&user, b.disabled).await?;
    st.basic_cache.clear();
    Ok(Json(serde_json::json!({ "username": user.username, "disabled": b.disabled })))
}

pub async fn qualifications(State(st): State<AppState>, caller: Caller, Path(name): Path<String>, Json(b): Json<Qualifications>) -> ApiResult<Json<worklist::User>> {
    require(&caller, &[Role::Admin])?;
    let user = user_named(&st, &name).await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// `PUT /api/admin/users/{name}/password {"password"}`: an admin resets a password (the
/// user forgot it, or it leaked); every session and token of the user ends.
pub async fn reset_password(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(b): Json<NewPassword>,
) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let user = user_named(&st, &name).await?;
    st.worklist.set_password(&user, &b.password, None).await?;
    st.basic_cache.clear();
    Ok(Json(serde_json::json!({ "username": user.username, "password_reset": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteName {
    name: String,
}

/// `PUT /api/admin/sites/{name}/name {"name"}`: rename a site (its patients' issuer stays).
pub async fn rename_site(State(st): State<AppState>, caller: Caller, Path(name): Path<String>, Json(b): Json<SiteName>) -> ApiResult<Json<storage::Site>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    Ok(Json(storage::sites::rename_site(&st.storage.db, site.id, &b.name).await?))
}

/// `DELETE /api/admin/sites/{name}/ae-titles/{ae}`: the AE title is refused from the next
/// association on.
pub async fn remove_ae_title(State(st): State<AppState>, caller: Caller, Path((name, ae)): Path<(String, String)>) -> ApiResult<Json<storage::Site>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    if !storage::sites::remove_ae_title(&st.storage.db, site.id, &ae).await? {
        return Err(ApiError::NotFound(format!("site {name:?} has no AE title {ae:?}")));
    }
    let site = storage::sites::get_site(&st.storage.db, site.id).await?.ok_or_else(|| ApiError::NotFound("site gone".into()))?;
    Ok(Json(site))
}

/// `PUT /api/admin/sites/{name}/hl7-senders/{sender}`: the site's HIS, as HL7 names it
/// (`APP` or `APP@FACILITY`, MSH-3/MSH-4); its orders are the site's.
pub async fn add_hl7_sender(State(st): State<AppState>, caller: Caller, Path((name, sender)): Path<(String, String)>) -> ApiResult<Json<Vec<storage::sites::Hl7Sender>>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    let sender = storage::sites::Hl7Sender::parse(&sender)?;
    storage::sites::add_hl7_sender(&st.storage.db, site.id, &sender).await?;
    Ok(Json(storage::sites::hl7_senders_of(&st.storage.db, site.id).await?))
}

/// `DELETE /api/admin/sites/{name}/hl7-senders/{sender}`: its messages are refused (NAK).
pub async fn remove_hl7_sender(State(st): State<AppState>, caller: Caller, Path((name, sender)): Path<(String, String)>) -> ApiResult<Json<Vec<storage::sites::Hl7Sender>>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    let sender = storage::sites::Hl7Sender::parse(&sender)?;
    if !storage::sites::remove_hl7_sender(&st.storage.db, site.id, &sender).await? {
        return Err(ApiError::NotFound(format!("site {name:?} has no HL7 sender {sender}")));
    }
    Ok(Json(storage::sites::hl7_senders_of(&st.storage.db, site.id).await?))
}

/// `PUT /api/admin/sites/{name}/outbound` with `{"hl7": "host:port", "fhir": "base URL",
/// "pacs": {"ae_title", "host", "port"}}` (each key optional): where the site's signed,
/// corrected and amended reports go from now on.
pub async fn set_outbound(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(outbound): Json<worklist::results::Outbound>,
) -> ApiResult<Json<worklist::results::Outbound>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    st.worklist.set_site_outbound(site.id, &outbound).await?;
    Ok(Json(st.worklist.site_outbound(site.id).await?))
}

/// `GET /api/admin/sites/{name}/outbound`
pub async fn outbound(State(st): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<worklist::results::Outbound>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    Ok(Json(st.worklist.site_outbound(site.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    /// pending, failed or delivered; all when absent
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/admin/results[?state=pending|failed|delivered]`: the results outbox, newest
/// first: what went where, what is waiting, what keeps failing and why.
pub async fn results_outbox(State(st): State<AppState>, caller: Caller, Query(q): Query<ResultsQuery>) -> ApiResult<Json<Vec<worklist::results::ResultDelivery>>> {
    require(&caller, &[Role::Admin])?;
    Ok(Json(st.worklist.list_results(q.state.as_deref(), q.limit.unwrap_or(200)).await?))
}

/// `PUT /api/admin/pools/{pool}/ae-titles/{ae}`: a county workstation's AE title joins the
/// pool: it may query and retrieve the pool's studies (C-FIND, C-MOVE, C-GET), and stores
/// nothing.
pub async fn add_pool_ae(State(st): State<AppState>, caller: Caller, Path((pool, ae)): Path<(String, String)>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let p = st.worklist.pool_by_name(&pool).await?;
    storage::sites::add_pool_ae(&st.storage.db, p.id, &ae).await?;
    Ok(Json(serde_json::json!({ "pool": p.name, "ae_title": ae.trim() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    host: String,
    port: u16,
}

/// `PUT /api/admin/dicom-nodes/{ae}` with `{"host", "port"}`: where a registered AE title
/// (a site's or a pool's) listens, so studies may be moved to it (C-MOVE).
pub async fn set_node_address(State(st): State<AppState>, caller: Caller, Path(ae): Path<String>, Json(b): Json<NodeAddress>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    storage::sites::set_node_address(&st.storage.db, &ae, &b.host, b.port).await?;
    Ok(Json(serde_json::json!({ "ae_title": ae.trim(), "host": b.host.trim(), "port": b.port })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    /// SHA-256 of the certificate (`openssl x509 -noout -fingerprint -sha256`), colons allowed
    fingerprint: String,
}

fn fingerprint(text: &str) -> Result<readhub_types::CertFingerprint, ApiError> {
    readhub_types::CertFingerprint::parse(text)
        .ok_or_else(|| ApiError::Unprocessable(format!("{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")))
}

/// `POST /api/admin/sites/{name}/certificates {"fingerprint"}`: bind the site to a
/// modality's client certificate: its AE titles then store only over DICOM TLS with it.
pub async fn bind_certificate(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(b): Json<CertificateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    storage::sites::bind_certificate(&st.storage.db, site.id, &fingerprint(&b.fingerprint)?).await?;
    Ok(Json(serde_json::json!({ "site": site.name, "certificates": storage::sites::certificates_of(&st.storage.db, site.id).await? })))
}

/// `DELETE /api/admin/sites/{name}/certificates/{fingerprint}`
pub async fn unbind_certificate(
    State(st): State<AppState>,
    caller: Caller,
    Path((name, fp)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let site = site_named(&st, &name).await?;
    if !storage::sites::unbind_certificate(&st.storage.db, site.id, &fingerprint(&fp)?).await? {
        return Err(ApiError::NotFound(format!("certificate {fp} is not bound to site {name:?}")));
    }
    Ok(Json(serde_json::json!({ "site": site.name, "certificates": storage::sites::certificates_of(&st.storage.db, site.id).await? })))
}
