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
    let parts = tokio::task::spawn_blocking(move || -> ApiResult<Vec<(String, Vec<u8>)>> {
        use dicom_pixeldata::PixelDecoder;
        let obj = dicom_object::from_reader(&file[128..]).map_err(|e| ApiError::Internal(format!("cannot read stored instance: {e}")))?;
        let obj = if as_stored { obj } else { crate::render::native_if_jpeg12(obj)? };
        let n_frames = obj
            .element_opt(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        if let Some(bad) = list.iter().find(|f| **f > n_frames) {
            return Err(ApiError::BadRequest(format!("frame {bad} is out of range: the instance has {n_frames} frame(s)")));
        }
        let pixels = obj
            .element_opt(dicom_dictionary_std::tags::PIXEL_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| ApiError::NotFound("the instance has no pixel data".into()))?;
        let native = format!("application/octet-stream; transfer-syntax={}", "1.2.840.10008.1.2.1");
        match pixels.value() {
            dicom_core::value::Value::PixelSequence(seq) if as_stored && seq.fragments().len() == n_frames as usize || as_stored && n_frames == 1 => {
                let frags = seq.fragments();
                let ct = format!("application/octet-stream; transfer-syntax={stored_ts}");
                Ok(list
                    .iter()
                    .map(|f| {
                        let bytes = if frags.len() == n_frames as usize { frags[*f as usize - 1].clone() } else { frags.concat() };
                        (ct.clone(), bytes)
                    })
                    .collect())
            }
            dicom_core::value::Value::Primitive(p) => {
                let all = p.to_bytes();
                let size = all.len() / n_frames as usize;
                Ok(list.iter().map(|f| (native.clone(), all[(*f as usize - 1) * size..*f as usize * size].to_vec())).collect())
            }
            _ => list
                .iter()
                .map(|f| {
                    let d = obj
                        .decode_pixel_data_frame(f - 1)
                        .map_err(|e| ApiError::Unprocessable(format!("frame {f} cannot be decoded: {e}")))?;
                    Ok((native.clone(), d.data().to_vec()))
                })
                .collect(),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    multipart_response("application/octet-stream", &format!("readhub-{}", &inst.sha256[..24]), &parts)
}
