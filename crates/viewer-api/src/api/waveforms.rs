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
/// samples in µV per lead, the sampling frequency, filters, the device's measurements and
/// readhub's own (`computed`), side by side.
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
        let annotations = dicom_media::ecg::annotations(&obj);
        let analysis = crate::ecg_analysis::analyse(&wf, &annotations);
        let comparison = crate::ecg_analysis::compare(&analysis);
        let original = ecg::dicom::original(&obj).map(|(format, name, _)| json!({ "format": format, "file_name": name }));
        Ok(axum::Json(json!({
            "sop_instance_uid": sop,
            "sampling_frequency": wf.sampling_frequency,
            "unit": "uV",
            "filter_low_hz": wf.filter_low_hz,
            "filter_high_hz": wf.filter_high_hz,
            "notch_hz": wf.notch_hz,
            "channels": wf.channels,
            "annotations": annotations,
            // readhub's own measurements from the median beat (null when it could not measure:
            // computed_error says why), the device's recognised ones, and both side by side
            "computed": analysis.computed.as_ref().ok(),
            "computed_error": analysis.computed.as_ref().err(),
            "device": analysis.device,
            "statements": analysis.statements,
            "comparison": comparison,
            "original": original,
        })))
    })
    .await?
}
