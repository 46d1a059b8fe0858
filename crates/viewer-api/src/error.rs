//! One error type for every handler: domain errors to 4xx, internal ones logged and 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required / 请登录")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// the server lacks something it needs (e.g. a font): the message says what to install
    #[error("{0}")]
    Unavailable(String),
    /// too many attempts: the message, and seconds until the next may succeed
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a client hears while the database, the disk or the object store is down or full:
/// the request can be repeated once the fault has passed.
fn unavailable(e: &storage::Error) -> ApiError {
    tracing::error!(error = %e, "storage unavailable");
    ApiError::Unavailable("the hub's storage is unavailable right now (database or disk); try again in a minute / 存储暂不可用, 请稍后重试".into())
}

impl From<worklist::Error> for ApiError {
    fn from(e: worklist::Error) -> Self {
        match e {
            worklist::Error::Storage(s) if s.is_unavailable() => unavailable(&s),
            e @ worklist::Error::Locked { retry_after } => ApiError::TooManyRequests(e.to_string(), retry_after.as_secs().max(1)),
            worklist::Error::NotFound(m) => ApiError::NotFound(format!("{m} not found")),
            worklist::Error::Conflict(m) => ApiError::Conflict(m),
            worklist::Error::Forbidden(m) => ApiError::Forbidden(m),
            worklist::Error::Invalid(m) => ApiError::Unprocessable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        match e {
            e @ storage::Error::NotYetShared { .. } => {
                tracing::warn!(error = %e, "instance not in the shared store yet");
                ApiError::Unavailable(format!("{e} / 该实例仍在接收节点的缓冲区中, 请稍后重试"))
            }
            s if s.is_unavailable() => unavailable(&s),
            storage::Error::NotFound(m) => ApiError::NotFound(m),
            storage::Error::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<dicom_media::MediaError> for ApiError {
    fn from(e: dicom_media::MediaError) -> Self {
        use dicom_media::MediaError as M;
        match e {
            M::OutOfRange(m) => ApiError::BadRequest(m),
            M::Undecodable(m) => ApiError::Unprocessable(m),
            M::NoPixelData => ApiError::NotFound(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; see the server log / 服务器内部错误".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if let ApiError::TooManyRequests(_, secs) = &self {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("30"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"readhub\", Bearer"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
