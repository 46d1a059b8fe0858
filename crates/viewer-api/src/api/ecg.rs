//! ECG files that are not DICOM (HL7 aECG, Philips XML; SCP-ECG behind a flag):
//! `POST /api/ecg` with the file as the body, as a technician (for their site) or an admin
//! (`?site=NAME`). readhub makes a DICOM 12-lead ECG of it (the original kept inside) and
//! stores it through the same ingest as C-STORE and STOW-RS: same site attribution, same
//! durability (the answer comes after the instance is durable and indexed), same worklist.
//! Also: the original file back, and the critical-ECG suggestions of an item.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use storage::ingest::Refusal;
use worklist::{Role, Scope};

use crate::auth::{require, Caller};
use crate::error::{ApiError, ApiResult};
use crate::trail::AuditSlot;
use crate::AppState;

#[derive(Deserialize)]
pub struct UploadQuery {
    /// the site an admin stores for (technicians store for their own)
    site: Option<String>,
    /// the original file name (else from Content-Disposition or X-File-Name)
    filename: Option<String>,
}

/// What an upload made.
#[derive(Debug, Serialize)]
pub struct Ingested {
    /// "stored", or "duplicate" when this very file was stored before
    pub outcome: &'static str,
    pub format: &'static str,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub retrieve_url: String,
    pub leads: usize,
    pub seconds: f64,
    pub sampling_frequency: f64,
    pub patient_id: Option<String>,
}

/// Why a file was not stored: the reason in words, and whether sending it again may help.
#[derive(Debug)]
pub enum Refused {
    /// the file is not an ECG readhub reads, or is broken: fix the file
    Unreadable(String),
    /// the ingest refused the instance (UID belongs to another site, full disk, …)
    Ingest(ApiError),
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Unreadable(m) => ApiError::Unprocessable(m),
            Refused::Ingest(e) => e,
        }
    }
}

/// Read, convert and store one ECG file for `site`. The instance is durable and indexed,
/// and its worklist item current, when this returns Ok.
pub async fn ingest_file(st: &AppState, site: &storage::Site, bytes: Vec<u8>, file_name: Option<String>, source: String) -> Result<Ingested, Refused> {
    let allow_scp = st.config.ecg_scp_experimental;
    // the XML tree, the samples and the DICOM made are held at once: about eight times the
    // file (measured on the aECG example: 0.5 MB in, 4 MB of tree and samples)
    let _share = st.media_budget.reserve(u32::try_from((bytes.len() * 8).div_ceil(1 << 20)).unwrap_or(u32::MAX).max(1)).await.map_err(Refused::Ingest)?;
    let converted = st
        .media_budget
        .decode(move || {
            let record = ecg::parse(&bytes, allow_scp).map_err(|e| e.to_string())?;
            let dcm = ecg::dicom::to_part10(&record, &ecg::dicom::Source { bytes: &bytes, file_name: file_name.as_deref() })?;
            Ok::<_, String>((record, dcm))
        })
        .await
        .map_err(Refused::Ingest)?;
    let (record, dcm) = converted.map_err(Refused::Unreadable)?;
    let transfer = st.transfers.begin("ecg", source);
    let mut writer = st.storage.begin_part10(site, &transfer);
    let written = writer.write(&dcm).await;
    let stored = match written {
        Ok(()) => writer.finish().await,
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    };
    let inst = stored.map_err(|e| {
        tracing::warn!(error = %e, site = %site.name, "ECG upload refused by the ingest");
        Refused::Ingest(match e.refusal() {
            Refusal::OutOfResources if e.is_transient() => ApiError::Unavailable(format!("{e}; try again in a minute / 存储暂不可用")),
            Refusal::OutOfResources => ApiError::Unprocessable(e.to_string()),
            Refusal::DataSetMismatch => ApiError::Conflict(e.to_string()),
            Refusal::CannotUnderstand => ApiError::Unprocessable(e.to_string()),
        })
    })?;
    let duplicate = inst.outcome == storage::IngestOutcome::Duplicate;
    if !duplicate {
        crate::dicomweb::stow::hand_over(st, &transfer, true).await;
        if let Err(e) = crate::ecg_analysis::analyse_pending(st).await {
            tracing::warn!(error = %e, "ECG analysis after upload failed; the background analysis retries");
        }
    }
    let a = &inst.attrs;
    Ok(Ingested {
        outcome: if duplicate { "duplicate" } else { "stored" },
        format: record.format.name(),
        study_instance_uid: a.study_uid.clone(),
        series_instance_uid: a.series_uid.clone(),
        sop_instance_uid: a.sop_instance_uid.clone(),
        retrieve_url: format!("/dicom-web/studies/{}/series/{}/instances/{}", a.study_uid, a.series_uid, a.sop_instance_uid),
        leads: record.leads.len(),
        seconds: record.seconds(),
        sampling_frequency: record.sampling_hz,
        patient_id: record.patient.id.clone(),
    })
}

fn file_name(headers: &HeaderMap, q: &UploadQuery) -> Option<String> {
    if let Some(n) = &q.filename {
        return Some(n.clone());
    }
    if let Some(n) = headers.get("x-file-name").and_then(|v| v.to_str().ok()) {
        // the viewer sends it percent-encoded (header values are ASCII; names are often Chinese)
        return Some(crate::trail::percent_decode(n));
    }
    let cd = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
    cd.split(';').find_map(|p| p.trim().strip_prefix("filename=")).map(|n| n.trim_matches('"').to_string())
}

/// `POST /api/ecg`: one ECG file as the body.
pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    slot: Option<Extension<AuditSlot>>,
    body: Body,
) -> ApiResult<Response> {
    let site = match (caller.0.role, caller.scope(), &q.site) {
        (Role::Technician, Scope::Site(id), _) => storage::sites::get_site(&st.storage.db, id).await?,
        (Role::Admin, Scope::All, Some(name)) => storage::sites::site_by_name(&st.storage.db, name).await?,
        (Role::Admin, Scope::All, None) => return Err(ApiError::BadRequest("an admin uploads for a site: add ?site=NAME".into())),
        _ => return Err(ApiError::Forbidden("only a site's technicians (or an admin) upload ECGs / 仅技师可上传心电图".into())),
    }
    .ok_or_else(|| ApiError::NotFound("site not found".into()))?;
    let name = file_name(&headers, &q);
    let bytes = axum::body::to_bytes(body, ecg::MAX_FILE_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"));
        if too_large {
            ApiError::BadRequest(format!("the file is larger than {} MB, more than any ECG file / 文件过大", ecg::MAX_FILE_BYTES >> 20))
        } else {
            ApiError::BadRequest(format!("the upload was cut short: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("the body is empty: send the ECG file as the request body / 请上传心电图文件".into()));
    }
    let result = ingest_file(&st, &site, bytes.to_vec(), name.clone(), format!("ecg:{}", caller.0.username)).await;
    match result {
        Ok(i) => {
            if let Some(Extension(slot)) = &slot {
                slot.subject(audit::Subject::Study(i.study_instance_uid.clone()));
                slot.detail(format!("site {}: {} {} ({})", site.name, i.format, i.outcome, name.as_deref().unwrap_or("")));
            }
            tracing::info!(site = %site.name, format = i.format, outcome = i.outcome, study = %i.study_instance_uid, "ECG file stored");
            let status = if i.outcome == "stored" { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(i)).into_response())
        }
        Err(r) => {
            if let Some(Extension(slot)) = &slot {
                slot.detail(format!("site {}: refused ({})", site.name, name.as_deref().unwrap_or("")));
            }
            Err(r.into())
        }
    }
}

/// `GET /api/ecg/{study}/{series}/{sop}/original`: the file the cart sent, byte for byte.
pub async fn original(State(st): State<AppState>, caller: Caller, Path((study, series, sop)): Path<(String, String, String)>) -> ApiResult<Response> {
    let inst = crate::dicomweb::find(&st, &caller, &study, &series, &sop).await?;
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let (format, name, bytes) = st
        .media_budget
        .decode(move || dicom_media::open_part10(&file).ok().and_then(|o| ecg::dicom::original(&o)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {sop} was not converted from another ECG format: it has no original")))?;
    let ext = if format == "scp-ecg" { "scp" } else { "xml" };
    let name = name.unwrap_or_else(|| format!("{sop}.{ext}")).replace(['"', '\\', '\r', '\n'], "_");
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(if ext == "xml" { "application/xml" } else { "application/octet-stream" }));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", name.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect::<String>())) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format) {
        h.insert("x-ecg-format", v);
    }
    Ok(resp)
}

/// `GET /api/worklist/{id}/ecg-suggestions`: the suggested critical results of an item.
pub async fn suggestions(State(st): State<AppState>, caller: Caller, Path(id): Path<worklist::ItemId>) -> ApiResult<Json<Vec<worklist::ecg::Suggestion>>> {
    require(&caller, &[Role::Reader, Role::Admin])?;
    super::visible_item(&st.worklist, &caller, id).await?;
    Ok(Json(st.worklist.ecg_suggestions(id, &caller.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// confirm: the finding sent to the site (the rule's name when empty); dismiss: why
    #[serde(default)]
    text: String,
}

/// `POST /api/ecg-suggestions/{id}/confirm`: the reader confirms: a critical result goes to the site.
pub async fn confirm(
    State(st): State<AppState>,
    caller: Caller,
    slot: Option<Extension<AuditSlot>>,
    Path(id): Path<i64>,
    Json(d): Json<Decision>,
) -> ApiResult<Json<worklist::ecg::Suggestion>> {
    decide(st, caller, slot, id, true, d).await
}

/// `POST /api/ecg-suggestions/{id}/dismiss`: the reader dismisses it (recorded, nothing sent).
pub async fn dismiss(
    State(st): State<AppState>,
    caller: Caller,
    slot: Option<Extension<AuditSlot>>,
    Path(id): Path<i64>,
    Json(d): Json<Decision>,
) -> ApiResult<Json<worklist::ecg::Suggestion>> {
    decide(st, caller, slot, id, false, d).await
}

async fn decide(st: AppState, caller: Caller, slot: Option<Extension<AuditSlot>>, id: i64, confirm: bool, d: Decision) -> ApiResult<Json<worklist::ecg::Suggestion>> {
    require(&caller, &[Role::Reader])?;
    let s = st.worklist.decide_ecg_suggestion(id, &caller.0, confirm, &d.text).await?;
    // the trail names the item (its study and patient), not only the suggestion
    if let Some(Extension(slot)) = slot {
        slot.subject(audit::Subject::Item(s.item_id.get()));
        slot.detail(format!("critical ECG suggestion {id} {}: {}", s.state, s.rule));
    }
    if confirm {
        tracing::warn!(suggestion = id, item = %s.item_id, critical = ?s.critical_result_id, "critical ECG suggestion confirmed");
    } else {
        tracing::info!(suggestion = id, item = %s.item_id, "critical ECG suggestion dismissed");
    }
    Ok(Json(s))
}
