//! WADO-RS (PS3.18 10.4): instances, series and studies, streamed as stored or decoded to an uncompressed syntax on request.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use crate::AppState;
use crate::budget::MediaBudget;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use futures::StreamExt;
use futures::TryStreamExt;
use storage::query::InstanceRow;
use super::{find, multipart_headers, requested_ts, PathUids};

/// WADO-RS: `GET …/instances/{sop}`: the stored Part-10 file, byte for byte, streamed.
/// `multipart/related; type="application/dicom"` by default (PS3.18 8.7.3), a bare
/// `application/dicom` body when that is what the client accepts.
pub async fn retrieve_instance(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    let etag = format!("\"{}\"", inst.sha256);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let mut resp = stream_instances(&st, &headers, vec![inst]).await?;
    resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?);
    Ok(resp)
}

/// WADO-RS: `GET /studies/{study}` and `/studies/{study}/series/{series}`: every current
/// instance, one multipart part each, streamed one after the other.
pub async fn retrieve_study_or_series(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Path<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let uids = PathUids::from(Some(path))?;
    let q = storage::query::InstanceQuery { study_uid: uids.study, series_uid: uids.series, limit: Some(10_000), ..Default::default() };
    let rows = storage::query::search_instances(&st.storage.db, caller.studies(), &q).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("no such study or series here".into()));
    }
    stream_instances(&st, &headers, rows).await
}

/// Syntaxes we transcode to on request: the uncompressed ones every client reads.
const TRANSCODE_TARGETS: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// The syntax to send an instance in: None for as stored; Some(target) to transcode.
fn delivery_ts(requested: &[String], stored: &str) -> Result<Option<&'static str>, ()> {
    if requested.is_empty() || requested.iter().any(|t| t == "*" || t == stored) {
        return Ok(None);
    }
    requested
        .iter()
        .find_map(|t| TRANSCODE_TARGETS.iter().find(|x| **x == t.as_str()).copied())
        .map(Some)
        .ok_or(())
}

type ByteStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// One instance's bytes: streamed as stored (checked against the `size` announced ahead,
/// so a Content-Length sent is never a lie), or decoded and re-encoded in `target`.
async fn instance_body(
    blobs: storage::BlobStore,
    budget: MediaBudget,
    inst: InstanceRow,
    target: Option<&'static str>,
    size: Option<u64>,
) -> std::io::Result<(String, ByteStream)> {
    match target {
        None => {
            let body = blobs.stream(&inst.blob_key).await.map_err(std::io::Error::other)?;
            if size.is_some_and(|n| n != body.size) {
                return Err(std::io::Error::other(format!(
                    "instance {} changed size in the object store while being sent", inst.sop_instance_uid
                )));
            }
            Ok((inst.transfer_syntax_uid, body.stream))
        }
        Some(ts) => {
            // every frame is decoded, and the re-encoded file is held beside the stored one
            let frames = u32::try_from(inst.number_of_frames.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
            let _share = budget.reserve(MediaBudget::cost(&inst, frames).saturating_mul(2)).await.map_err(std::io::Error::other)?;
            let file = blobs.get_bytes(&inst.blob_key).await.map_err(std::io::Error::other)?;
            let out = budget
                .decode(move || dicom_media::pixels::transcode(&file, ts))
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
            Ok((ts.to_string(), futures::stream::once(async move { Ok(bytes::Bytes::from(out)) }).boxed()))
        }
    }
}

/// The head of an instance's part in a multipart body.
fn part_head(boundary: &str, ts: &str) -> String {
    format!("--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n\r\n")
}

/// The stored files of `rows` as the client accepts them: as stored, or decoded to an
/// uncompressed syntax when that is what the client asks for (through dicom-pixeldata).
/// What is sent as stored is streamed in large reads with its Content-Length; gzip only
/// where it pays (native syntaxes, and only when `gzip_instances` is on).
async fn stream_instances(st: &AppState, headers: &HeaderMap, rows: Vec<InstanceRow>) -> ApiResult<Response> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*").to_string();
    let requested = requested_ts(&accept);
    let mut plan = Vec::with_capacity(rows.len());
    for inst in rows {
        let target = delivery_ts(&requested, &inst.transfer_syntax_uid).map_err(|_| {
            ApiError::NotAcceptable(format!(
                "instance {} is stored as {}; readhub sends it as stored (transfer-syntax=*) or as {}",
                inst.sop_instance_uid,
                inst.transfer_syntax_uid,
                TRANSCODE_TARGETS.join(" or ")
            ))
        })?;
        plan.push((inst, target));
    }
    let bare = plan.len() == 1
        && accept.split(',').any(|a| a.trim().starts_with("application/dicom"))
        && !accept.contains("multipart/related");
    let gzip = st.config.gzip_instances && plan.iter().any(|(inst, target)| crate::is_native(target.unwrap_or(&inst.transfer_syntax_uid)));
    let as_stored = plan.iter().all(|(_, target)| target.is_none());
    let blobs = st.storage.blobs.clone();
    let budget = st.media_budget.clone();
    let mut resp = if bare {
        let (inst, target) = plan.into_iter().next().expect("one");
        let ts = target.map(str::to_string).unwrap_or_else(|| inst.transfer_syntax_uid.clone());
        let ct = format!("application/dicom; transfer-syntax={ts}");
        let (body, length) = match target {
            // as stored: opened now, so its size goes ahead of it
            None => {
                let stored = blobs.stream(&inst.blob_key).await?;
                (Body::from_stream(stored.stream), Some(stored.size))
            }
            Some(_) => {
                let stream = futures::stream::once(instance_body(blobs, budget, inst, target, None)).map_ok(|(_, body)| body).try_flatten();
                (Body::from_stream(stream), None)
            }
        };
        let mut resp = Response::new(body);
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).map_err(|e| ApiError::Internal(e.to_string()))?);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        if let Some(n) = length {
            resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        resp
    } else {
        let boundary = format!("readhub-{}", &plan[0].0.sha256[..24]);
        let tail = format!("--{boundary}--\r\n");
        // as stored on the local disk, every part's size is known ahead (a stat each): the
        // whole body's too; from a remote store the body goes chunked
        let sizes = match as_stored {
            true => blobs.local_sizes(plan.iter().map(|(inst, _)| inst.blob_key.clone()).collect()).await,
            false => None,
        };
        let length = sizes.as_ref().map(|sizes| {
            plan.iter().zip(sizes).map(|((inst, _), n)| part_head(&boundary, &inst.transfer_syntax_uid).len() as u64 + n + 2).sum::<u64>()
                + tail.len() as u64
        });
        let plan: Vec<_> = match sizes {
            Some(sizes) => plan.into_iter().zip(sizes).map(|((inst, t), n)| (inst, t, Some(n))).collect(),
            None => plan.into_iter().map(|(inst, t)| (inst, t, None)).collect(),
        };
        let b = boundary.clone();
        let parts = futures::stream::iter(plan)
            .then(move |(inst, target, size)| {
                let blobs = blobs.clone();
                let budget = budget.clone();
                let b = b.clone();
                async move {
                    let (ts, body) = instance_body(blobs, budget, inst, target, size).await?;
                    let head = part_head(&b, &ts);
                    Ok::<_, std::io::Error>(
                        futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
                            .chain(body)
                            .chain(futures::stream::once(async { Ok(bytes::Bytes::from_static(b"\r\n")) })),
                    )
                }
            })
            .try_flatten();
        let body = parts.chain(futures::stream::once(async move { Ok(bytes::Bytes::from(tail)) }));
        let mut resp = multipart_headers(Response::new(Body::from_stream(body)), "application/dicom", &boundary)?;
        if let Some(n) = length {
            resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        resp
    };
    if !gzip {
        resp.extensions_mut().insert(crate::Precompressed);
    }
    Ok(resp)
}
