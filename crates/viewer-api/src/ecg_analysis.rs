//! What readhub reads off an ECG instance: its own measurements (`ecg::measure`), the
//! device's (the Waveform Annotation Sequence, recognised by name), the device's statements,
//! and the critical criteria that fire. Used by the waveform JSON, and by the background
//! analysis that makes an item STAT and suggests a critical result (worklist::ecg).

use ecg::measure::Computed;
use ecg::{DeviceMeasurement, MeasureKind};
use serde::Serialize;

use crate::error::ApiError;
use crate::AppState;

pub struct Analysis {
    pub computed: Result<Computed, String>,
    pub device: Vec<DeviceMeasurement>,
    pub statements: Vec<String>,
}

/// Analyse a decoded waveform and its annotations.
pub fn analyse(wf: &dicom_media::ecg::Waveform, notes: &[dicom_media::ecg::Annotation]) -> Analysis {
    let leads: Vec<(&str, &[f32])> = wf.channels.iter().map(|c| (c.label.as_str(), c.samples_uv.as_slice())).collect();
    let computed = ecg::measure::compute(&leads, wf.sampling_frequency);
    let mut device: Vec<DeviceMeasurement> = Vec::new();
    let mut statements = Vec::new();
    for a in notes {
        if let Some(t) = &a.text {
            statements.push(t.clone());
        }
        let (Some(name), Some(v)) = (&a.name, a.value) else { continue };
        let Some(kind) = MeasureKind::recognise(name) else { continue };
        let v = match a.unit.as_deref() {
            Some("s") if !matches!(kind, MeasureKind::HeartRate | MeasureKind::PAxis | MeasureKind::QrsAxis | MeasureKind::TAxis) => v * 1000.0,
            _ => v,
        };
        if !device.iter().any(|d| d.kind == kind) {
            device.push(DeviceMeasurement { kind, value: v });
        }
    }
    Analysis { computed, device, statements }
}

/// Read an instance's Part-10 bytes and analyse it.
pub fn analyse_part10(file: &[u8]) -> Result<Analysis, ApiError> {
    let obj = dicom_media::open_part10(file)?;
    let wf = dicom_media::ecg::decode(&obj).map_err(|e| ApiError::Unprocessable(format!("waveform cannot be decoded: {e}")))?;
    Ok(analyse(&wf, &dicom_media::ecg::annotations(&obj)))
}

/// One measurement side by side: readhub's, the device's, and whether they differ by more
/// than the tolerance.
#[derive(Serialize)]
pub struct Compared {
    pub measure: MeasureKind,
    pub computed: Option<f64>,
    pub device: Option<f64>,
    pub tolerance: f64,
    pub differs: bool,
}

/// How far readhub's and the device's values may be apart before the viewer says so
/// (what the sample files showed between two good methods; see the note of issue 13).
pub fn tolerance(kind: MeasureKind) -> f64 {
    match kind {
        MeasureKind::HeartRate => 5.0,
        MeasureKind::Rr | MeasureKind::Pr | MeasureKind::PDuration | MeasureKind::Qrs => 25.0,
        MeasureKind::Qt | MeasureKind::QtcBazett | MeasureKind::QtcFridericia | MeasureKind::Qtc => 40.0,
        MeasureKind::PAxis | MeasureKind::QrsAxis | MeasureKind::TAxis => 30.0,
    }
}

pub fn compare(a: &Analysis) -> Vec<Compared> {
    let c = a.computed.as_ref().ok();
    let dev = |k: MeasureKind| a.device.iter().find(|d| d.kind == k).map(|d| d.value);
    let rows: [(MeasureKind, Option<f64>, Option<f64>); 8] = [
        (MeasureKind::HeartRate, c.map(|c| c.heart_rate_bpm), dev(MeasureKind::HeartRate)),
        (MeasureKind::Rr, c.map(|c| c.rr_ms), dev(MeasureKind::Rr)),
        (MeasureKind::Pr, c.and_then(|c| c.pr_ms), dev(MeasureKind::Pr)),
        (MeasureKind::Qrs, c.and_then(|c| c.qrs_ms), dev(MeasureKind::Qrs)),
        (MeasureKind::Qt, c.and_then(|c| c.qt_ms), dev(MeasureKind::Qt)),
        (MeasureKind::QtcBazett, c.and_then(|c| c.qtc_bazett_ms), dev(MeasureKind::QtcBazett).or(dev(MeasureKind::Qtc))),
        (MeasureKind::QtcFridericia, c.and_then(|c| c.qtc_fridericia_ms), dev(MeasureKind::QtcFridericia)),
        (MeasureKind::QrsAxis, c.and_then(|c| c.qrs_axis_deg), dev(MeasureKind::QrsAxis)),
    ];
    rows.into_iter()
        .map(|(k, computed, device)| {
            let tolerance = tolerance(k);
            let differs = match (computed, device) {
                (Some(a), Some(b)) if matches!(k, MeasureKind::QrsAxis) => {
                    let d = (a - b).abs() % 360.0;
                    d.min(360.0 - d) > tolerance
                }
                (Some(a), Some(b)) => (a - b).abs() > tolerance,
                _ => false,
            };
            Compared { measure: k, computed, device, tolerance, differs }
        })
        .collect()
}

/// Analyse every ECG instance that has an item and no analysis yet: record the
/// measurements and, when a critical rule fires, make the item STAT with a suggestion.
/// Returns how many were recorded. Run after an ECG upload and on the background tick.
pub async fn analyse_pending(st: &AppState) -> Result<usize, ApiError> {
    let mut done = 0;
    loop {
        let pending = st.worklist.pending_ecg(16).await?;
        if pending.is_empty() {
            return Ok(done);
        }
        for p in &pending {
            let bytes = match st.storage.blobs.get_bytes(&p.blob_key).await {
                Ok(b) => b,
                Err(e) => {
                    // the blob store is down: try again on the next tick
                    tracing::warn!(instance = p.instance_id, error = %e, "ECG analysis: cannot read the instance");
                    return Ok(done);
                }
            };
            let rules = st.config.ecg_rules.clone();
            let outcome = st
                .media_budget
                .decode(move || {
                    let a = analyse_part10(&bytes)?;
                    let findings = rules.evaluate(a.computed.as_ref().ok(), &a.device, &a.statements);
                    Ok::<_, ApiError>((a.computed, findings))
                })
                .await;
            let (computed, error, findings) = match outcome {
                Ok(Ok((Ok(c), f))) => (serde_json::to_string(&c).ok(), String::new(), f),
                Ok(Ok((Err(e), f))) => (None, e, f),
                Ok(Err(e)) | Err(e) => (None, e.to_string(), Vec::new()),
            };
            let findings: Vec<(String, String)> = findings.into_iter().map(|f| (f.rule, f.evidence)).collect();
            if !findings.is_empty() {
                tracing::warn!(item = %p.item_id, instance = p.instance_id, rules = ?findings, "critical ECG criteria met: item made STAT, suggestion for the reader");
            }
            if st.worklist.record_ecg_analysis(p, computed.as_deref(), &error, &findings).await? {
                done += 1;
            }
        }
    }
}

/// What an ECG report shows besides the text: the key measurements and a lead II rhythm
/// strip (µV samples, sampling rate).
pub struct ReportEcg {
    /// (label, value) pairs: "心率 HR" → "75 次/分 bpm"
    pub measures: Vec<(String, String)>,
    pub strip: Vec<f32>,
    pub strip_lead: String,
    pub sampling_frequency: f64,
}

/// The ECG of a report's study, when it is one: its measurements (readhub's, and the
/// device's where readhub could not measure) and its rhythm strip. None for imaging.
pub async fn report_ecg(st: &AppState, r: &worklist::reports::Report) -> Result<Option<ReportEcg>, ApiError> {
    if !r.modalities.split('\\').any(|m| m.trim() == "ECG") {
        return Ok(None);
    }
    let q = storage::query::InstanceQuery { study_uid: Some(r.study_instance_uid.clone()), ..Default::default() };
    let found = storage::query::search_instances(&st.storage.db, storage::query::StudyFilter::Site(r.site_id), &q).await?;
    let Some(inst) = found.into_iter().find(|i| dicom_media::ecg::is_waveform(&i.sop_class_uid)) else {
        return Ok(None);
    };
    let bytes = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    st.media_budget
        .decode(move || {
            let obj = dicom_media::open_part10(&bytes)?;
            let wf = dicom_media::ecg::decode(&obj).map_err(|e| ApiError::Unprocessable(format!("waveform cannot be decoded: {e}")))?;
            let a = analyse(&wf, &dicom_media::ecg::annotations(&obj));
            let c = a.computed.as_ref().ok();
            let dev = |k: MeasureKind| a.device.iter().find(|d| d.kind == k).map(|d| d.value);
            let pick = |mine: Option<f64>, k: MeasureKind| mine.or(dev(k)).map(|v| format!("{}", v.round()));
            let mut measures = Vec::new();
            let mut push = |label: &str, v: Option<String>, unit: &str| {
                if let Some(v) = v {
                    measures.push((label.to_string(), format!("{v} {unit}")));
                }
            };
            push("心率 HR", pick(c.map(|c| c.heart_rate_bpm), MeasureKind::HeartRate), "次/分 bpm");
            push("PR", pick(c.and_then(|c| c.pr_ms), MeasureKind::Pr), "ms");
            push("QRS", pick(c.and_then(|c| c.qrs_ms), MeasureKind::Qrs), "ms");
            push("QT", pick(c.and_then(|c| c.qt_ms), MeasureKind::Qt), "ms");
            push("QTc", pick(c.and_then(|c| c.qtc_bazett_ms), MeasureKind::QtcBazett).or_else(|| dev(MeasureKind::Qtc).map(|v| format!("{}", v.round()))), "ms");
            push("电轴 Axis", pick(c.and_then(|c| c.qrs_axis_deg), MeasureKind::QrsAxis), "°");
            let lead = wf.channels.iter().find(|ch| ch.label == "II").or(wf.channels.first());
            Ok(Some(ReportEcg {
                measures,
                strip: lead.map(|l| l.samples_uv.clone()).unwrap_or_default(),
                strip_lead: lead.map(|l| l.label.clone()).unwrap_or_default(),
                sampling_frequency: wf.sampling_frequency,
            }))
        })
        .await?
}

/// The seconds of rhythm strip a report shows: 7 s at 25 mm/s is 175 mm, the width of A4
/// between its margins.
pub const STRIP_SECONDS: f64 = 7.0;
