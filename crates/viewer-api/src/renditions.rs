//! Pre-rendered pictures: the thumbnails and the preview the web viewer asks for first are
//! made once per instance, in the background after ingest (never on the acknowledgement
//! path: the C-STORE or STOW-RS answer does not wait for them), stored beside the instance
//! in the object store, and served from there. The one place that knows which renderings
//! are kept, under which key, and how they are made.
//!
//! Beside them, frame 1 in JPEG-LS lossless: the full-fidelity samples the viewer fetches
//! once the preview is up (frames of multi-frame instances are compressed on request).
//!
//! A rendition's key is derived from the instance's blob key, and a new version of an
//! instance is a new blob: its old pictures are never served for it. A rendition missing
//! (an instance from before this, a crash before the worker came to it) is rendered on
//! request as any other and then kept.

use std::time::Duration;

use dicom_media::render::{Format, RenderParams, Rendered};

use crate::budget::MediaBudget;
use crate::AppState;

/// The viewports kept: the viewer's preview (1024), the DICOMweb default thumbnail (128),
/// the viewer's series thumbnails (96). JPEG, quality 90, the file's own window, frame 1.
pub const VIEWPORTS: [(u32, u32); 3] = [(1024, 1024), (128, 128), (96, 96)];

const QUALITY: u8 = 90;

/// The parameters of a kept rendition of `viewport`.
fn params(viewport: (u32, u32)) -> RenderParams {
    RenderParams { format: Format::Jpeg, window: None, quality: QUALITY, viewport: Some(viewport), any_format: false }
}

/// Which kept rendition a request for frame `frame` with `p` is, if any.
pub fn kept(frame: u32, p: &RenderParams) -> Option<(u32, u32)> {
    let plain = frame == 1 && p.format == Format::Jpeg && p.window.is_none() && p.quality == QUALITY;
    p.viewport.filter(|v| plain && VIEWPORTS.contains(v))
}

/// Where the rendition of `viewport` of the instance stored at `blob_key` is kept.
pub fn key(blob_key: &str, viewport: (u32, u32)) -> String {
    format!("{blob_key}.{}x{}.jpg", viewport.0, viewport.1)
}

/// Where frame 1 of an instance is kept in JPEG-LS lossless (what the viewer fetches).
pub fn jpegls_key(blob_key: &str) -> String {
    format!("{blob_key}.frame1.jls")
}

/// Frame 1 in JPEG-LS lossless, if it is kept.
pub async fn get_jpegls(st: &AppState, blob_key: &str) -> Option<Vec<u8>> {
    st.storage.blobs.get_bytes(&jpegls_key(blob_key)).await.ok().map(|b| b.to_vec())
}

/// Keep frame 1 in JPEG-LS lossless (made on request because it was missing).
pub async fn put_jpegls(st: &AppState, blob_key: &str, codestream: &[u8]) {
    if let Err(e) = put_bytes(&st.storage.blobs, &jpegls_key(blob_key), codestream).await {
        tracing::warn!(blob.key = %blob_key, error = %e, "could not keep a JPEG-LS frame");
    }
}

/// A kept rendition, if it is there.
pub async fn get(st: &AppState, blob_key: &str, viewport: (u32, u32)) -> Option<Vec<u8>> {
    st.storage.blobs.get_bytes(&key(blob_key, viewport)).await.ok().map(|b| b.to_vec())
}

/// Keep a rendition (made on request because it was missing).
pub async fn put(st: &AppState, blob_key: &str, viewport: (u32, u32), jpeg: &[u8]) {
    if let Err(e) = put_bytes(&st.storage.blobs, &key(blob_key, viewport), jpeg).await {
        tracing::warn!(blob.key = %blob_key, error = %e, "could not keep a rendered picture");
    }
}

async fn put_bytes(blobs: &storage::BlobStore, key: &str, bytes: &[u8]) -> Result<(), storage::Error> {
    let mut w = blobs.writer_at(key);
    w.write(bytes).await?;
    w.finish().await.map(|_| ())
}

/// Instances rendered per pass.
const BATCH: i64 = 16;

/// How long a node's claim on a batch lasts: far longer than rendering 16 instances takes
/// (under a second each), so a claim lapses only when its node died.
const CLAIM_FOR: Duration = Duration::from_secs(120);

/// How often the worker looks for new instances when it found none.
const IDLE: Duration = Duration::from_millis(500);

// The worker waits while instances arrive (`Storage::receiving`): rendering a CT's slices
// while they arrive took the CPU from their acknowledgements (on 2 cores, CT ingest ran at
// 0.41× DCMTK storescp with it, see BENCHMARKS.md).

/// The background worker: renders every new image instance's kept renditions, one
/// instance at a time (bounded: a burst of CT slices waits its turn, and each takes its
/// share of the decoding budget like a request), until `stop`.
pub async fn run(st: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        // every node of a cluster renders; each claims its own batch (storage::renditions)
        let found = match storage::renditions::claim(&st.storage.db, storage::now_ms(), CLAIM_FOR, BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "looking for instances to render failed");
                Vec::new()
            }
        };
        let idle = found.is_empty();
        for inst in found {
            while st.storage.receiving() {
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(storage::RECEIVING_WITHIN).await;
            }
            if *stop.borrow() {
                return;
            }
            render_one(&st, &inst).await;
        }
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.changed() => if *stop.borrow() { return },
            }
        }
    }
}

/// Render and keep one instance's renditions; recorded as done even when it cannot be
/// rendered (a request for it will say why), so a broken film is not tried for ever.
#[tracing::instrument(skip_all, fields(instance = inst.id))]
async fn render_one(st: &AppState, inst: &storage::renditions::Pending) {
    let image = inst.current && inst.rows.is_some() && !dicom_media::ecg::is_waveform(&inst.sop_class_uid);
    if image {
        if let Err(e) = make(st, inst).await {
            tracing::info!(error = %e, "instance not pre-rendered; it is rendered on request instead");
        }
    }
    if let Err(e) = storage::renditions::mark_done(&st.storage.db, inst.id, storage::now_ms()).await {
        tracing::warn!(error = %e, "could not record an instance's renditions");
    }
}

async fn make(st: &AppState, inst: &storage::renditions::Pending) -> Result<(), String> {
    let _share = st.media_budget.reserve(MediaBudget::cost_of(inst.size_bytes, inst.rows, inst.columns, 1)).await.map_err(|e| e.to_string())?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await.map_err(|e| e.to_string())?;
    let wanted: Vec<RenderParams> = VIEWPORTS.iter().map(|v| params(*v)).collect();
    let made: Vec<Rendered> = st
        .media_budget
        .decode(move || dicom_media::render::render_frame_sizes(&file, 1, None, &wanted))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for (viewport, r) in VIEWPORTS.iter().zip(made) {
        put_bytes(&st.storage.blobs, &key(&inst.blob_key, *viewport), &r.bytes).await.map_err(|e| e.to_string())?;
    }
    // and the full-fidelity frame the viewer fetches next, in JPEG-LS lossless (a
    // multi-frame instance's frames are compressed when asked for)
    if inst.number_of_frames.unwrap_or(1) > 1 {
        return Ok(());
    }
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await.map_err(|e| e.to_string())?;
    let jls = st
        .media_budget
        .decode(move || dicom_media::pixels::jpegls_frames(&file, &[1]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if let Some(frame) = jls.and_then(|mut f| f.pop()) {
        put_bytes(&st.storage.blobs, &jpegls_key(&inst.blob_key), &frame).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
