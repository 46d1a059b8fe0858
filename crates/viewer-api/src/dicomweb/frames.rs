//! Frames (PS3.18 8.7.4).

use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::budget::MediaBudget;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::renditions;
use dicom_media::pixels::JPEG_LS_LOSSLESS;
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
    let list = frame_list(&frames)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let stored_ts = inst.transfer_syntax_uid.clone();
    let requested = requested_ts(&accept);
    let as_stored = requested.iter().any(|t| t == "*" || *t == stored_ts);
    let boundary = format!("readhub-{}", &inst.sha256[..24]);
    // the client's order is its preference: JPEG-LS named before the stored syntax wins
    let jpegls_first = requested.iter().position(|t| t == JPEG_LS_LOSSLESS).is_some_and(|at| {
        requested.iter().position(|t| t == "*" || *t == stored_ts).is_none_or(|stored| at < stored)
    });
    if jpegls_first && stored_ts != JPEG_LS_LOSSLESS {
        if let Some(parts) = jpegls_frames(&st, &inst, &list).await? {
            let ct = format!("application/octet-stream; transfer-syntax={JPEG_LS_LOSSLESS}");
            let parts: Vec<(String, Vec<u8>)> = parts.into_iter().map(|bytes| (ct.clone(), bytes)).collect();
            return multipart_response("application/octet-stream", &boundary, &parts);
        }
        if !requested.iter().any(|t| t == dicom_media::pixels::EXPLICIT_VR_LE) {
            return Err(ApiError::NotAcceptable(format!(
                "this image cannot be sent as JPEG-LS lossless sample for sample (colour or signed samples); ask for {}",
                dicom_media::pixels::EXPLICIT_VR_LE
            )));
        }
    }
    let decoded_frames = if as_stored { 0 } else { list.len() as u32 };
    let _share = st.media_budget.reserve(MediaBudget::cost(&inst, decoded_frames)).await?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let parts = st.media_budget.decode(move || dicom_media::pixels::frames(&file, &list, as_stored)).await??;
    let parts: Vec<(String, Vec<u8>)> =
        parts.into_iter().map(|(ts, bytes)| (format!("application/octet-stream; transfer-syntax={ts}"), bytes)).collect();
    multipart_response("application/octet-stream", &boundary, &parts)
}

/// Frames in JPEG-LS lossless: frame 1 as kept beside the instance (made after ingest, or
/// now and then kept), others compressed on request. None: the image cannot go that way.
async fn jpegls_frames(st: &AppState, inst: &storage::query::InstanceRow, list: &[u32]) -> ApiResult<Option<Vec<Vec<u8>>>> {
    let first_only = list == [1];
    if first_only {
        if let Some(kept) = renditions::get_jpegls(st, &inst.blob_key).await {
            return Ok(Some(vec![kept]));
        }
    }
    let share = st.media_budget.reserve(MediaBudget::cost(inst, list.len() as u32)).await?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let wanted = list.to_vec();
    let made = st.media_budget.decode(move || dicom_media::pixels::jpegls_frames(&file, &wanted)).await??;
    drop(share);
    if let (true, Some(frames)) = (first_only, &made) {
        let (st, key, bytes) = (st.clone(), inst.blob_key.clone(), frames[0].clone());
        tokio::spawn(async move { renditions::put_jpegls(&st, &key, &bytes).await });
    }
    Ok(made)
}

/// The most frames one request may list (a multi-frame object has rarely more than a few
/// hundred; the viewer asks for one at a time).
const MAX_FRAMES_PER_REQUEST: usize = 4096;

/// Parse `1,3,2`: frame numbers from 1, each once, in the order first asked. A list that
/// repeats a frame is answered once per frame, so what a request costs does not grow
/// with how often it names the same frame.
pub(crate) fn frame_list(frames: &str) -> ApiResult<Vec<u32>> {
    let bad = || ApiError::BadRequest(format!("{frames:?} is not a list of frame numbers (1, 2, …)"));
    let mut list: Vec<u32> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in frames.split(',') {
        let n = f.trim().parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
        if seen.insert(n) {
            list.push(n);
            if list.len() > MAX_FRAMES_PER_REQUEST {
                return Err(ApiError::BadRequest(format!("at most {MAX_FRAMES_PER_REQUEST} frames per request")));
            }
        }
    }
    if list.is_empty() {
        return Err(bad());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists_name_each_frame_once() {
        assert_eq!(frame_list("1,3,2").unwrap(), [1, 3, 2]);
        assert_eq!(frame_list(&vec!["1"; 1500].join(",")).unwrap(), [1], "a frame named 1,500 times is one frame");
        assert_eq!(frame_list(" 2, 2 ,1").unwrap(), [2, 1]);
        for bad in ["", "0", "1,x", "1,,2", "-1"] {
            assert!(frame_list(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
        assert!(frame_list(&many.join(",")).is_err(), "too many distinct frames");
    }
}
