//! Metadata (DICOM JSON cached at ingest) and bulk data.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use super::{find, multipart_response, PathUids, DICOM_JSON};

/// WADO-RS metadata (PS3.18 10.4.1.1.2): `…/studies/{study}/metadata`,
/// `…/series/{series}/metadata`, `…/instances/{sop}/metadata`. Answered from the DICOM JSON
/// cached at ingest: one query, however many instances.
pub async fn retrieve_metadata(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Path<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let PathUids { study, series, sop } = PathUids::from(Some(path))?;
    let study = study.unwrap_or_default();
    let rows = storage::query::metadata(&st.storage.db, caller.studies(), &study, series.as_deref(), sop.as_deref()).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!("no instances of study {study} here")));
    }
    let base = st.public_base(&headers);
    let mut body = String::with_capacity(rows.iter().map(|r| r.3.len() + 64).sum::<usize>() + 2);
    body.push('[');
    for (i, (st_uid, se_uid, sop_uid, json)) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let url = format!("{base}/dicom-web/studies/{st_uid}/series/{se_uid}/instances/{sop_uid}");
        body.push_str(&json.replace(storage::attrs::BULK_DATA, &format!("{url}/bulkdata/")));
    }
    body.push(']');
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp)
}

/// WADO-RS bulk data of a top-level attribute: `…/instances/{sop}/bulkdata/{tag}` (the
/// BulkDataURIs of the metadata point here). Native pixel data comes back whole; compressed
/// pixel data is for the frames resource.
pub async fn retrieve_bulkdata(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop, tag)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    // ASCII first: slicing at byte 4 of "00\u{FFFD}UID" (8 bytes) would panic
    let parsed = (tag.len() == 8 && tag.is_ascii())
        .then(|| (u16::from_str_radix(&tag[..4], 16).ok(), u16::from_str_radix(&tag[4..], 16).ok()))
        .and_then(|(g, e)| Some(dicom_core::Tag(g?, e?)))
        .ok_or_else(|| ApiError::BadRequest(format!("{tag:?} is not a tag (8 hex digits, e.g. 7FE00010)")))?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let value = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let obj = dicom_object::from_reader(&file[128..]).map_err(|e| ApiError::Internal(format!("cannot read stored instance: {e}")))?;
        let e = obj
            .element_opt(parsed)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("the instance has no attribute {parsed}")))?;
        match e.value() {
            dicom_core::value::Value::Primitive(p) => Ok(p.to_bytes().into_owned()),
            dicom_core::value::Value::PixelSequence(_) => Err(ApiError::NotAcceptable(
                "compressed pixel data is retrieved by frame: …/frames/{n}".into(),
            )),
            dicom_core::value::Value::Sequence(_) => Err(ApiError::BadRequest(format!("{parsed} is a sequence, not bulk data"))),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bare = accept.contains("application/octet-stream") && !accept.contains("multipart/related");
    let mut resp = if bare {
        let mut r = Response::new(Body::from(value));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        r
    } else {
        let boundary = format!("readhub-{}", &inst.sha256[..24]);
        return multipart_response("application/octet-stream", &boundary, &[("application/octet-stream".into(), value)]);
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp)
}
