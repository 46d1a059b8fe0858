//! Who is calling: a session cookie (browser), a bearer token, or HTTP Basic (DICOMweb
//! clients). Basic credentials are verified with argon2id once and then cached briefly, so
//! a viewer fetching hundreds of frames does not pay a password hash per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};
use storage::query::StudyFilter;
use worklist::{Role, Scope, User};

use crate::error::ApiError;
use crate::AppState;

pub const SESSION_COOKIE: &str = "readhub_session";
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);

/// Verified Basic credentials: sha256(user:password) → (user, the password hash it was
/// verified against, when). Checked against the database on every use (`authenticate`).
#[derive(Default)]
pub struct BasicCache(Mutex<HashMap<[u8; 32], (User, String, Instant)>>);

impl BasicCache {
    /// Forget every cached credential (an account was disabled: it must not ride the cache).
    pub fn clear(&self) {
        self.0.lock().expect("cache lock").clear();
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub User);

impl Caller {
    /// What this caller may see (the worklist's one visibility rule).
    pub fn scope(&self) -> Scope {
        Scope::of(&self.0)
    }

    /// The studies this caller may see through DICOMweb.
    pub fn studies(&self) -> StudyFilter {
        self.scope().study_filter()
    }
}

/// Whether a request comes from the hub's own pages: what the browser says of it
/// (`Sec-Fetch-Site`), else its `Origin` against the hub's own (or a configured CORS
/// origin). A page on another port of the same host is `same-site`, not `same-origin`, and is
/// refused like any other. A request with neither header did not come from a browser page
/// (browsers send `Origin` on every cross-origin request that changes state).
fn same_origin(parts: &Parts, state: &AppState) -> bool {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let origin = header("origin");
    let allowed_cors = origin.is_some_and(|o| state.config.cors_origins.iter().any(|c| c.trim_end_matches('/') == o));
    match header("sec-fetch-site") {
        Some("same-origin" | "none") => true,
        Some(_) => allowed_cors,
        None => origin.is_none_or(|o| o == state.public_base(&parts.headers) || allowed_cors),
    }
}

/// A state-changing request that the browser authenticated with the session cookie must
/// come from the hub's own pages: else the browser attached the cookie to a request another
/// page made (CSRF), and it is refused. (Bearer tokens and Basic credentials are not sent
/// by a browser on its own, so requests carrying them pass.)
pub(crate) fn refuse_forged(parts: &Parts, state: &AppState) -> Result<(), ApiError> {
    let by_cookie = !parts.headers.get(axum::http::header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
    if by_cookie && !parts.method.is_safe() && !same_origin(parts, state) {
        return Err(ApiError::Forbidden(
            "a request from another site or page was refused: use the hub's own pages / 拒绝来自其他网页的请求".into(),
        ));
    }
    Ok(())
}

pub fn session_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await;
        if let (Ok(c), Some(slot)) = (&caller, crate::trail::slot(&parts.extensions)) {
            slot.user(&c.0);
        }
        caller
    }
}

async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    {
        let auth = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(basic) = auth.as_deref().and_then(|v| v.strip_prefix("Basic ")) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(ApiError::Unauthorized)?;
            let (user, pass) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
            if let Some(slot) = crate::trail::slot(&parts.extensions) {
                // replaced by the user once the password is right
                slot.attempted(user);
            }
            let key: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
            let cached = state.basic_cache.0.lock().expect("cache lock").get(&key).cloned();
            if let Some((u, hash, at)) = cached {
                // the cache spares argon2, not the database: the account as it is now (any
                // node may have changed it) must still be enabled with the same password
                match state.worklist.current_account(u.id).await {
                    Ok(Some((now, h))) if h == hash && at.elapsed() < BASIC_CACHE_TTL => return Ok(Caller(now)),
                    Err(worklist::Error::Storage(s)) if s.is_unavailable() => return Err(ApiError::from(s)),
                    _ => {
                        state.basic_cache.0.lock().expect("cache lock").remove(&key);
                    }
                }
            }
            let u = state
                .worklist
                .authenticate(user, pass, &crate::client_of(&parts.extensions))
                .await
                .map_err(|e| match e {
                    // the database being down is not the caller's fault: 503, not 401;
                    // a locked name is told so (429), as on the login form
                    worklist::Error::Storage(s) if s.is_unavailable() => ApiError::from(s),
                    e @ worklist::Error::Locked { .. } => ApiError::from(e),
                    _ => ApiError::Unauthorized,
                })?;
            if let Ok(Some((_, hash))) = state.worklist.current_account(u.id).await {
                state.basic_cache.0.lock().expect("cache lock").insert(key, (u.clone(), hash, Instant::now()));
            }
            return Ok(Caller(u));
        }
        let token = session_token(parts).ok_or(ApiError::Unauthorized)?;
        refuse_forged(parts, state)?;
        match state.worklist.session_user(&token).await? {
            Some(u) => Ok(Caller(u)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// `Option<Caller>`: no credentials (or wrong ones) is `None`, not a 401; for the routes a
/// signed-out browser asks, such as `GET /api/session`.
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(c) => Ok(Some(c)),
            Err(ApiError::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Refuse unless the caller has one of `roles`.
pub fn require(caller: &Caller, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&caller.0.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "a {} may not do this / 当前角色无此权限",
            caller.0.role
        )))
    }
}
