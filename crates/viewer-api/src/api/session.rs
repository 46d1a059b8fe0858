//! Sessions: log in (cookie and bearer token), log out, who am I.

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::AppendHeaders;
use axum::response::IntoResponse;
use crate::AppState;
use crate::auth::Caller;
use crate::auth::SESSION_COOKIE;
use crate::auth::session_token;
use crate::error::ApiError;
use crate::error::ApiResult;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(
    State(st): State<AppState>,
    client: Option<axum::Extension<crate::ClientAddr>>,
    slot: Option<axum::Extension<crate::trail::AuditSlot>>,
    parts: Parts,
    Json(body): Json<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    // another page must not sign the browser in as someone else (login CSRF)
    crate::auth::refuse_forged(&parts, &st)?;
    let client = client.map_or_else(|| "unknown".to_string(), |c| c.0 .0.to_string());
    if let Some(s) = &slot {
        s.attempted(&body.username);
    }
    let user = st.worklist.authenticate(&body.username, &body.password, &client).await.map_err(|e| match e {
        worklist::Error::Forbidden(m) => ApiError::Unprocessable(m),
        other => other.into(),
    })?;
    let token = st.worklist.create_session(user.id).await?;
    if let Some(s) = &slot {
        s.user(&user);
    }
    tracing::info!(user = %user.username, role = %user.role, "login");
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}", secure(&st));
    Ok((
        AppendHeaders([(SET_COOKIE, cookie)]),
        Json(serde_json::json!({ "token": token, "user": user })),
    ))
}

/// Over HTTPS the cookie is `Secure`: the browser never sends it over plain HTTP.
fn secure(st: &AppState) -> &'static str {
    if st.config.tls {
        "; Secure"
    } else {
        ""
    }
}

pub async fn logout(State(st): State<AppState>, parts: Parts) -> ApiResult<impl IntoResponse> {
    // another page must not sign the reader out either
    crate::auth::refuse_forged(&parts, &st)?;
    if let Some(t) = session_token(&parts) {
        if let (Ok(Some(u)), Some(slot)) = (st.worklist.session_user(&t).await, crate::trail::slot(&parts.extensions)) {
            slot.user(&u);
        }
        st.worklist.end_session(&t).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", secure(&st));
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
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /api/me/password {"old_password", "new_password"}`: a user changes their own
/// password; their other sessions and tokens end, this one stays.
pub async fn change_password(
    State(st): State<AppState>,
    caller: Caller,
    parts: Parts,
    Json(b): Json<PasswordChange>,
) -> ApiResult<Json<serde_json::Value>> {
    let client = crate::client_of(&parts.extensions);
    let keep = session_token(&parts).filter(|_| !parts.headers.get(axum::http::header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Basic ")));
    st.worklist
        .change_own_password(&caller.0, &b.old_password, &b.new_password, &client, keep.as_deref())
        .await
        .map_err(|e| match e {
            worklist::Error::Forbidden(m) => ApiError::Unprocessable(m),
            other => other.into(),
        })?;
    st.basic_cache.clear();
    Ok(Json(serde_json::json!({ "ok": true })))
}
