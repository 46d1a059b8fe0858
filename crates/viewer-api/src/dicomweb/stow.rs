//! STOW-RS (PS3.18 10.5): `POST /dicom-web/studies[/{study}]` with a
//! `multipart/related; type="application/dicom"` body. Each part streams through the same
//! ingest as C-STORE (validation, site attribution from the login, durability, duplicate
//! rules) and is stored byte for byte. The answer lists what was stored and what was not,
//! with the same failure codes a modality would get.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use serde::Deserialize;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use storage::StoredInstance;

use super::key;
use crate::trail::AuditSlot;
use axum::Extension;
use storage::ingest::Refusal;
use worklist::{Role, Scope};

#[derive(Deserialize)]
pub struct StowQuery {
    /// the site an admin stores for (technicians always store for their own site)
    site: Option<String>,
}

pub async fn store(
    st: State<AppState>,
    caller: Caller,
    q: Query<StowQuery>,
    headers: HeaderMap,
    slot: Option<Extension<AuditSlot>>,
    body: Body,
) -> ApiResult<Response> {
    stow(st, caller, q, headers, slot.map(|s| s.0), None, body).await
}

pub async fn store_in_study(
    st: State<AppState>,
    caller: Caller,
    q: Query<StowQuery>,
    headers: HeaderMap,
    slot: Option<Extension<AuditSlot>>,
    Path(study): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    if !storage::attrs::is_valid_uid(&study) {
        return Err(ApiError::BadRequest(format!("StudyInstanceUID {study:?} is not a valid UID")));
    }
    stow(st, caller, q, headers, slot.map(|s| s.0), Some(study), body).await
}

/// The boundary of a `multipart/related` body whose parts are DICOM files.
pub(crate) fn boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::UnsupportedMediaType("STOW-RS needs Content-Type: multipart/related; type=\"application/dicom\"".into()))?;
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default().to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{media} is not accepted: send multipart/related; type=\"application/dicom\""
        )));
    }
    let mut boundary = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "boundary" => boundary = Some(v.to_string()),
                "type" if !v.eq_ignore_ascii_case("application/dicom") => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "parts of type {v} are not accepted: readhub stores application/dicom"
                    )))
                }
                _ => {}
            }
        }
    }
    boundary.filter(|b| !b.is_empty()).ok_or_else(|| ApiError::BadRequest("the multipart body has no boundary".into()))
}

fn uid_attr(tag: Tag, v: &str) -> (String, Value) {
    (key(tag), json!({ "vr": "UI", "Value": [v] }))
}

/// The most parts one STOW-RS request may carry (a CT study has a few hundred to a few
/// thousand slices; more can be sent in further requests).
const MAX_PARTS: usize = 10_000;

async fn stow(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<StowQuery>,
    headers: HeaderMap,
    slot: Option<AuditSlot>,
    study: Option<String>,
    body: Body,
) -> ApiResult<Response> {
    // a technician stores for the site they see; an admin names the site
    let site = match (caller.0.role, caller.scope(), &q.site) {
        (Role::Technician, Scope::Site(id), _) => storage::sites::get_site(&st.storage.db, id).await?,
        (Role::Admin, Scope::All, Some(name)) => storage::sites::site_by_name(&st.storage.db, name).await?,
        (Role::Admin, Scope::All, None) => return Err(ApiError::BadRequest("an admin stores for a site: add ?site=NAME".into())),
        _ => return Err(ApiError::Forbidden("only a site's technicians (or an admin) store studies / 仅技师可上传".into())),
    }
    .ok_or_else(|| ApiError::NotFound("site not found".into()))?;
    let boundary = boundary(&headers)?;
    let transfer = st.transfers.begin("stow", format!("stow:{}", caller.0.username));
    let mut handed_over = false;
    let limit = st.storage.limits.max_instance_bytes;
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(limit + 64 * 1024));
    let mut multipart = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);

    let mut referenced: Vec<Value> = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    let mut study_uids: Vec<String> = Vec::new();
    let base = st.public_base(&headers);
    let mut parts = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                // a broken body: what was already stored stays stored (and is reported by
                // the log); the client is told the request was malformed
                tracing::warn!(error = %e, stored = referenced.len(), "malformed STOW-RS body");
                hand_over(&st, &transfer, handed_over).await;
                return Err(ApiError::BadRequest(format!("malformed multipart body: {e}")));
            }
        };
        parts += 1;
        if parts > MAX_PARTS {
            // what a request holds (its response, one entry a part) stays bounded: the
            // rest is not read, and the client is told where it stopped
            failed.push(failure(None, 0xA700, &format!("parts after {MAX_PARTS} not read: send them in another request")));
            break;
        }
        let part_type = field.content_type().map(|m| m.essence_str().to_ascii_lowercase());
        if part_type.as_deref().is_some_and(|t| t != "application/dicom") {
            failed.push(failure(None, 0xC000, &format!("part {parts} is {}, not application/dicom", part_type.unwrap_or_default())));
            continue;
        }
        let mut writer = st.storage.begin_part10(&site, &transfer);
        if let Some(s) = &study {
            writer.expect_study(s);
        }
        let mut field = field;
        let mut broken = None;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    // after a refusal the rest of the part is read and dropped
                    let _ = writer.write(&chunk).await;
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = broken {
            writer.abort().await;
            if let multer::Error::FieldSizeExceeded { .. } = e {
                failed.push(failure(None, 0xA700, &format!("part {parts} exceeds the limit of {limit} bytes")));
                continue;
            }
            // the body itself is broken (cut short, bad framing): a malformed request
            tracing::warn!(error = %e, stored = referenced.len(), "STOW-RS body cut short");
            hand_over(&st, &transfer, handed_over).await;
            return Err(ApiError::BadRequest(format!("malformed multipart body: part {parts} is cut short ({e})")));
        }
        let uids = writer.announced();
        match writer.finish().await {
            Ok(inst) => {
                // its arrival was written with its index row (a duplicate has none)
                handed_over |= inst.outcome != storage::IngestOutcome::Duplicate;
                if !study_uids.contains(&inst.attrs.study_uid) {
                    study_uids.push(inst.attrs.study_uid.clone());
                }
                referenced.push(reference(&base, &inst));
            }
            Err(e) => {
                tracing::warn!(error = %e, part = parts, "STOW-RS part refused");
                failed.push(failure(uids.as_ref().map(|(c, i)| (c.as_str(), i.as_str())), failure_reason(&e), &e.to_string()));
            }
        }
    }
    hand_over(&st, &transfer, handed_over).await;
    if parts == 0 {
        return Err(ApiError::BadRequest("the multipart body has no parts".into()));
    }
    let mut out = Map::new();
    if study_uids.len() == 1 {
        out.insert(key(tags::RETRIEVE_URL), json!({ "vr": "UR", "Value": [format!("{base}/dicom-web/studies/{}", study_uids[0])] }));
    }
    if !failed.is_empty() {
        out.insert(key(tags::FAILED_SOP_SEQUENCE), json!({ "vr": "SQ", "Value": failed }));
    }
    if !referenced.is_empty() {
        out.insert(key(tags::REFERENCED_SOP_SEQUENCE), json!({ "vr": "SQ", "Value": referenced }));
    }
    // PS3.18 10.5.3: 200 all stored, 202 some, 409 none
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    tracing::info!(stored = referenced.len(), failed = failed.len(), site = %site.name, "STOW-RS");
    if let Some(slot) = slot {
        for uid in &study_uids {
            slot.subject(audit::Subject::Study(uid.clone()));
        }
        slot.detail(format!("site {}: {} stored, {} failed", site.name, referenced.len(), failed.len()));
    }
    let mut resp = (status, serde_json::to_vec(&Value::Object(out)).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"));
    Ok(resp)
}

/// The request is over: end its transfer and apply the arrivals now (the same consumer as
/// for C-STORE), so the worklist is current when the client hears back. If either fails,
/// the background consumer and the next start finish the job: what was stored is durable
/// and its arrivals with it.
pub(crate) async fn hand_over(st: &AppState, transfer: &storage::Transfer, handed_over: bool) {
    if !handed_over {
        return;
    }
    if let Err(e) = storage::arrival::end_transfer(&st.storage.db, transfer).await {
        tracing::error!(error = %e, "could not record the end of the STOW-RS transfer");
    }
    if let Err(e) = st.worklist.consume_arrivals().await {
        tracing::error!(error = %e, "worklist update after STOW-RS failed; the background consumer retries");
    }
}

/// The Failure Reason (0008,1197) of a refused part: the codes of PS3.4 B.2.3, as a
/// C-STORE-RSP would carry them.
fn failure_reason(e: &storage::IngestError) -> u16 {
    match e.refusal() {
        Refusal::OutOfResources => 0xA700,
        Refusal::DataSetMismatch => 0xA900,
        Refusal::CannotUnderstand => 0xC000,
    }
}

fn reference(base: &str, inst: &StoredInstance) -> Value {
    let a = &inst.attrs;
    let mut m: Map<String, Value> = [uid_attr(tags::REFERENCED_SOP_CLASS_UID, &a.sop_class_uid), uid_attr(tags::REFERENCED_SOP_INSTANCE_UID, &a.sop_instance_uid)].into_iter().collect();
    m.insert(
        key(tags::RETRIEVE_URL),
        json!({ "vr": "UR", "Value": [format!("{base}/dicom-web/studies/{}/series/{}/instances/{}", a.study_uid, a.series_uid, a.sop_instance_uid)] }),
    );
    Value::Object(m)
}

/// A Failed SOP Sequence item: the codes of PS3.4 B.2.3, with the reason in words too.
fn failure(uids: Option<(&str, &str)>, status: u16, reason: &str) -> Value {
    let mut m = Map::new();
    if let Some((class, inst)) = uids {
        m.extend([uid_attr(tags::REFERENCED_SOP_CLASS_UID, class), uid_attr(tags::REFERENCED_SOP_INSTANCE_UID, inst)]);
    }
    m.insert(key(tags::FAILURE_REASON), json!({ "vr": "US", "Value": [status] }));
    m.insert(key(tags::ERROR_COMMENT), json!({ "vr": "LO", "Value": [reason.chars().take(64).collect::<String>()] }));
    Value::Object(m)
}
