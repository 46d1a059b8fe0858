//! Frames (PS3.18 8.7.4).

use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use super::{find, multipart_response, requested_ts};

/// WADO-RS frames (PS3.18 8.7.4): `…/instances/{sop}/frames/1,3`, one part per frame.
/// With `transfer-syntax=*` (or the stored syntax) a compressed frame is sent as stored;
/// otherwise frames are decoded to native little-endian pixels (the default syntax).
pub async fn retrieve_frames(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop, frames)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    let list: Vec<u32> = frames
        .split(',')
        .map(|f| f.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<Vec<_>>>()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{frames:?} is not a list of frame numbers (1, 2, …)")))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let stored_ts = inst.transfer_syntax_uid.clone();
    let as_stored = requested_ts(&accept).iter().any(|t| t == "*" || *t == stored_ts);
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let parts = tokio::task::spawn_blocking(move || dicom_media::pixels::frames(&file, &list, as_stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let parts: Vec<(String, Vec<u8>)> =
        parts.into_iter().map(|(ts, bytes)| (format!("application/octet-stream; transfer-syntax={ts}"), bytes)).collect();
    multipart_response("application/octet-stream", &format!("readhub-{}", &inst.sha256[..24]), &parts)
}
