//! Decoded ECG samples for the viewer.

use axum::extract::Path;
use axum::extract::State;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use serde_json::Value;
use serde_json::json;

/// Decoded ECG samples for reading: `GET /api/waveforms/{study}/{series}/{sop}`, with
/// samples in µV per lead, the sampling frequency, filters, and the device's measurements.
pub async fn waveform(
    State(st): State<AppState>,
    caller: Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let inst = crate::dicomweb::find(&st, &caller, &study, &series, &sop).await?;
    if !dicom_media::ecg::is_waveform(&inst.sop_class_uid) {
        return Err(ApiError::Unprocessable(format!("{sop} is not an ECG waveform")));
    }
    let _share = st.media_budget.reserve(crate::budget::MediaBudget::cost(&inst, 1)).await?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    st.media_budget.decode(move || {
        let obj = dicom_media::open_part10(&file)?;
        let wf = dicom_media::ecg::decode(&obj).map_err(|e| ApiError::Unprocessable(format!("waveform cannot be decoded: {e}")))?;
        Ok(axum::Json(json!({
            "sop_instance_uid": sop,
            "sampling_frequency": wf.sampling_frequency,
            "unit": "uV",
            "filter_low_hz": wf.filter_low_hz,
            "filter_high_hz": wf.filter_high_hz,
            "notch_hz": wf.notch_hz,
            "channels": wf.channels,
            "annotations": dicom_media::ecg::annotations(&obj),
        })))
    })
    .await?
}
