//! Rendered resources and thumbnails (PS3.18 8.3.5): JPEG, PNG, or SVG for ECG paper.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::budget::MediaBudget;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::renditions;
use dicom_media::render::{self, RenderParams};
use storage::query::InstanceRow;
use super::{find, PathUids};

/// Thumbnails (PS3.18 8.3.5.1.3): an instance's first frame, the middle instance of a
/// series, the first series' of a study; 128 px unless a viewport is given.
pub async fn thumbnail(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Path<Vec<(String, String)>>,
    Query(mut params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let uids = PathUids::from(Some(path))?;
    let q = storage::query::InstanceQuery {
        study_uid: uids.study,
        series_uid: uids.series,
        sop_instance_uids: uids.sop.into_iter().collect(),
        limit: Some(10_000),
        ..Default::default()
    };
    let rows = storage::query::search_instances(&st.storage.db, caller.studies(), &q).await?;
    let first_series = rows.first().map(|r| r.series_uid.clone()).ok_or_else(|| ApiError::NotFound("nothing to show".into()))?;
    let in_series: Vec<&InstanceRow> = rows.iter().filter(|r| r.series_uid == first_series).collect();
    let pick = in_series[in_series.len() / 2].clone();
    if !params.iter().any(|(k, _)| k == "viewport") {
        params.push(("viewport".into(), "128,128".into()));
    }
    rendered(st, caller, headers, pick.study_uid.into_string(), pick.series_uid.into_string(), pick.sop_instance_uid.into_string(), 1, params).await
}

/// `…/instances/{sop}/rendered`
pub async fn rendered_instance(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    rendered(st, caller, headers, study, series, sop, 1, params).await
}

/// `…/instances/{sop}/frames/{n}/rendered` (one frame number)
pub async fn rendered_frame(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop, frames)): Path<(String, String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let frame: u32 = frames
        .trim()
        .parse()
        .ok()
        .filter(|f| *f >= 1)
        .ok_or_else(|| ApiError::BadRequest(format!("frame {frames:?} is not a frame number (1, 2, …)")))?;
    rendered(st, caller, headers, study, series, sop, frame, params).await
}

#[allow(clippy::too_many_arguments)]
async fn rendered(
    st: AppState,
    caller: Caller,
    headers: HeaderMap,
    study: String,
    series: String,
    sop: String,
    frame: u32,
    params: Vec<(String, String)>,
) -> ApiResult<Response> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    let accept = params
        .iter()
        .find(|(k, _)| k == "accept")
        .map(|(_, v)| v.clone())
        .or_else(|| headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let p = RenderParams::parse(&params, &accept).map_err(ApiError::BadRequest)?;
    let is_ecg = dicom_media::ecg::is_waveform(&inst.sop_class_uid);
    // the thumbnail or preview made after ingest, when that is what is asked for
    let kept = if is_ecg { None } else { renditions::kept(frame, &p) };
    if let Some(viewport) = kept {
        if let Some(jpeg) = renditions::get(&st, &inst.blob_key, viewport).await {
            return Ok(picture(jpeg, "image/jpeg"));
        }
    }
    let out = if is_ecg {
        // the share is held until the rendered bytes are made and the decoded frame is gone
        let _share = st.media_budget.reserve(MediaBudget::cost(&inst, 1)).await?;
        let bytes = st.storage.blobs.get_bytes(&inst.blob_key).await?;
        let site = storage::sites::get_site(&st.storage.db, inst.site_id).await?.map(|s| s.name).unwrap_or_default();
        st.media_budget.decode(move || dicom_media::ecg::render_instance(&bytes, &p, &site)).await??
    } else {
        // one decode of a film at a time: a burst of readers opening it waits for the first
        let decoding = match st.media_budget.decoded(&inst.blob_key) {
            Some(_) => None,
            None => Some(st.media_budget.decoding(&inst.blob_key).await),
        };
        if let Some(film) = st.media_budget.decoded(&inst.blob_key) {
            drop(decoding);
            // decoded for an earlier request: only the window, the size and the JPEG are new
            let _share = st.media_budget.reserve(MediaBudget::render_cost(inst.rows, inst.columns)).await?;
            st.media_budget.decode(move || film.render(frame, &p)).await??
        } else {
            let share = st.media_budget.reserve(MediaBudget::cost(&inst, 1)).await?;
            let bytes = st.storage.blobs.get_bytes(&inst.blob_key).await?;
            let (out, film) = st
                .media_budget
                .decode(move || {
                    let film = std::sync::Arc::new(render::Decoded::new(&bytes)?);
                    film.render(frame, &p).map(|out| (out, film))
                })
                .await??;
            drop(share);
            st.media_budget.keep_decoded(&inst.blob_key, film);
            drop(decoding);
            out
        }
    };
    if let Some(viewport) = kept {
        // missing (an instance from before renditions, or not yet come to): kept now
        let (st, key, jpeg) = (st.clone(), inst.blob_key.clone(), out.bytes.clone());
        tokio::spawn(async move { renditions::put(&st, &key, viewport, &jpeg).await });
    }
    Ok(picture(out.bytes, out.content_type))
}

fn picture(bytes: Vec<u8>, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    resp
}
