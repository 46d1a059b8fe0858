//! DICOMweb (PS3.18) routes: QIDO-RS study search, WADO-RS instance retrieve, and the
//! rendered resources. Every route is scoped by the caller's role and site or pool.

pub mod frames;
pub mod metadata;
pub mod qido;
pub mod rendered;
pub mod stow;
pub mod wado;

use axum::body::Body;
use axum::extract::Path;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use worklist::{SeriesUid, SopInstanceUid, StudyUid};
use dicom_core::{Tag, VR};
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use storage::attrs::is_valid_uid;
use storage::query::InstanceRow;

const DICOM_JSON: &str = "application/dicom+json";

fn check_uid(name: &str, uid: &str) -> ApiResult<()> {
    if is_valid_uid(uid) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{name} {uid:?} is not a valid UID (digits and dots, at most 64)")))
    }
}

/// The DICOM JSON key of a tag (PS3.18 F.2.1.1: eight uppercase hex digits).
fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The tag of a DICOM JSON key.
fn json_tag(key: &str) -> Option<Tag> {
    (key.len() == 8).then(|| u32::from_str_radix(key, 16).ok()).flatten().map(|n| Tag((n >> 16) as u16, n as u16))
}

/// The tag a QIDO-RS query key names: a keyword (`PatientName`) or its eight hex digits.
fn query_tag(k: &str) -> Option<Tag> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    json_tag(k).or_else(|| dicom_dictionary_std::StandardDataDictionary.by_name(k).map(|e| e.tag()))
}

fn attr(obj: &mut Map<String, Value>, tag: Tag, vr: VR, value: Option<Value>) {
    let vr = vr.to_string();
    match value {
        Some(v) => obj.insert(key(tag), json!({ "vr": vr, "Value": [v] })),
        None => obj.insert(key(tag), json!({ "vr": vr })),
    };
}

/// A PN value in DICOM JSON: its component groups as Alphabetic / Ideographic / Phonetic.
fn pn(value: &Option<String>) -> Option<Value> {
    let v = value.as_ref()?;
    let mut groups = v.split('=');
    let mut o = Map::new();
    for key in ["Alphabetic", "Ideographic", "Phonetic"] {
        if let Some(g) = groups.next().filter(|g| !g.is_empty()) {
            o.insert(key.into(), Value::String(g.to_string()));
        }
    }
    Some(Value::Object(o))
}

fn s(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::String(s.clone()))
}

/// The UIDs of a DICOMweb path (`{study}`, `{series}`, `{sop}`), each checked.
#[derive(Default)]
struct PathUids {
    study: Option<String>,
    series: Option<String>,
    sop: Option<String>,
}

impl PathUids {
    fn from(path: Option<Path<Vec<(String, String)>>>) -> ApiResult<Self> {
        let mut out = PathUids::default();
        for (k, v) in path.map(|Path(v)| v).unwrap_or_default() {
            let (name, slot) = match k.as_str() {
                "study" => ("StudyInstanceUID", &mut out.study),
                "series" => ("SeriesInstanceUID", &mut out.series),
                "sop" => ("SOPInstanceUID", &mut out.sop),
                _ => continue,
            };
            check_uid(name, &v)?;
            *slot = Some(v);
        }
        Ok(out)
    }
}

/// A `multipart/related` body of in-memory parts: (content type, bytes).
fn multipart_response(part_type: &str, boundary: &str, parts: &[(String, Vec<u8>)]) -> ApiResult<Response> {
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.1.len() + 128).sum());
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut resp = Response::new(Body::from(body));
    let compressed = |ct: &str| ct.split("transfer-syntax=").nth(1).is_some_and(|ts| !crate::is_native(ts.trim()));
    if !parts.is_empty() && parts.iter().all(|(ct, _)| compressed(ct)) {
        resp.extensions_mut().insert(crate::Precompressed);
    }
    multipart_headers(resp, part_type, boundary)
}

fn multipart_headers(mut resp: Response, part_type: &str, boundary: &str) -> ApiResult<Response> {
    let ct = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).map_err(|e| ApiError::Internal(e.to_string()))?);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp)
}

pub(crate) async fn find(st: &AppState, caller: &Caller, study: &str, series: &str, sop: &str) -> ApiResult<InstanceRow> {
    check_uid("StudyInstanceUID", study)?;
    check_uid("SeriesInstanceUID", series)?;
    check_uid("SOPInstanceUID", sop)?;
    storage::query::find_instance(
        &st.storage.db,
        caller.studies(),
        &StudyUid::new(study),
        &SeriesUid::new(series),
        &SopInstanceUid::new(sop),
    )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {sop} not found")))
}

/// The transfer syntaxes an Accept header asks for (`*` = as stored).
fn requested_ts(accept: &str) -> Vec<String> {
    accept
        .split(',')
        .flat_map(|part| part.split(';'))
        .filter_map(|p| p.trim().strip_prefix("transfer-syntax="))
        .map(|v| v.trim_matches('"').to_string())
        .collect()
}
