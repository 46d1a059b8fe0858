//! DICOMweb (PS3.18) routes: QIDO-RS study search, WADO-RS instance retrieve, and the
//! rendered resources. Every route is scoped by the caller's role and site or pool.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};
use storage::attrs::is_valid_uid;
use storage::query::{InstanceRow, StudyQuery};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::render::{self, RenderParams};
use crate::AppState;

const DICOM_JSON: &str = "application/dicom+json";

fn check_uid(name: &str, uid: &str) -> ApiResult<()> {
    if is_valid_uid(uid) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{name} {uid:?} is not a valid UID (digits and dots, at most 64)")))
    }
}

fn attr(obj: &mut Map<String, Value>, tag: &str, vr: &str, value: Option<Value>) {
    match value {
        Some(v) => obj.insert(tag.into(), json!({ "vr": vr, "Value": [v] })),
        None => obj.insert(tag.into(), json!({ "vr": vr })),
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

/// QIDO-RS: `GET /dicom-web/studies?…`
pub async fn search_studies(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let mut q = StudyQuery::default();
    let mut common = CommonKeys::default();
    for (k, v) in &params {
        let list = || v.split([',', '\\']).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        match k.as_str() {
            "PatientName" | "00100010" => q.patient_name = Some(v.clone()),
            "PatientID" | "00100020" => q.patient_id = Some(v.clone()),
            "IssuerOfPatientID" | "00100021" => q.issuer_of_patient_id = Some(v.clone()),
            "AccessionNumber" | "00080050" => q.accession_number = Some(v.clone()),
            "StudyDate" | "00080020" => q.study_date = Some(v.clone()),
            "StudyInstanceUID" | "0020000D" => {
                let uids = list();
                for u in &uids {
                    check_uid("StudyInstanceUID", u)?;
                }
                q.study_uids = uids;
            }
            "ModalitiesInStudy" | "00080061" => q.modalities_in_study = list(),
            other => common.take(other, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit, common.offset);
    let base = st.public_base(&headers);
    let rows = storage::query::search_studies(&st.storage.db, caller.studies(), &q).await?;
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, "00080020", "DA", s(&r.study_date));
            attr(&mut o, "00080030", "TM", s(&r.study_time));
            attr(&mut o, "00080050", "SH", s(&r.accession_number));
            o.insert("00080061".into(), json!({ "vr": "CS", "Value": r.modalities }));
            attr(&mut o, "00080090", "PN", pn(&r.referring_physician));
            attr(&mut o, "00081030", "LO", s(&r.study_description));
            attr(&mut o, "00081190", "UR", Some(Value::String(format!("{base}/dicom-web/studies/{}", r.study_uid))));
            attr(&mut o, "00100010", "PN", pn(&r.patient_name));
            attr(&mut o, "00100020", "LO", Some(Value::String(r.patient_id.clone())));
            attr(&mut o, "00100021", "LO", Some(Value::String(r.issuer_of_patient_id.clone())));
            attr(&mut o, "00100030", "DA", s(&r.patient_birth_date));
            attr(&mut o, "00100040", "CS", s(&r.patient_sex));
            attr(&mut o, "0020000D", "UI", Some(Value::String(r.study_uid.clone())));
            attr(&mut o, "00200010", "SH", s(&r.study_id));
            attr(&mut o, "00201206", "IS", Some(json!(r.num_series)));
            attr(&mut o, "00201208", "IS", Some(json!(r.num_instances)));
            (r.pk, o)
        })
        .collect();
    common.include.apply(&st, storage::query::Level::Study, &mut results, &base).await?;
    Ok(qido_response(results, &common))
}

/// Query keys every QIDO-RS level shares.
#[derive(Default)]
struct CommonKeys {
    limit: Option<i64>,
    offset: Option<i64>,
    include: IncludeField,
    ignored: Vec<String>,
}

/// `includefield` (PS3.18 8.3.4.3): attributes to return beyond the level's defaults.
#[derive(Default)]
enum IncludeField {
    #[default]
    Defaults,
    /// `all`: every attribute of the level that the stored headers hold
    All,
    /// these tags, as DICOM JSON keys (`00181030`)
    Tags(Vec<String>),
}

impl IncludeField {
    fn add(&mut self, value: &str) -> ApiResult<()> {
        use dicom_core::dictionary::DataDictionary;
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item.eq_ignore_ascii_case("all") {
                *self = IncludeField::All;
                continue;
            }
            let tag = if item.len() == 8 && item.bytes().all(|b| b.is_ascii_hexdigit()) {
                item.to_ascii_uppercase()
            } else {
                let t = dicom_dictionary_std::StandardDataDictionary.parse_tag(item).ok_or_else(|| {
                    ApiError::BadRequest(format!("includefield {item:?} is neither a DICOM keyword nor a tag (ggggeeee)"))
                })?;
                format!("{:04X}{:04X}", t.group(), t.element())
            };
            match self {
                IncludeField::All => {}
                IncludeField::Tags(tags) => tags.push(tag),
                IncludeField::Defaults => *self = IncludeField::Tags(vec![tag]),
            }
        }
        Ok(())
    }

    /// Adds the requested attributes to each result from its representative instance's
    /// cached metadata (first stored instance of the study/series; the instance itself).
    async fn apply(&self, st: &AppState, level: storage::query::Level, results: &mut [(i64, Map<String, Value>)], base: &str) -> ApiResult<()> {
        if matches!(self, IncludeField::Defaults) || results.is_empty() {
            return Ok(());
        }
        let pks: Vec<i64> = results.iter().map(|r| r.0).collect();
        let docs = storage::query::representative_metadata(&st.storage.db, level, &pks).await?;
        for (pk, obj) in results.iter_mut() {
            let Some(rep) = docs.get(pk) else { continue };
            let Ok(Value::Object(meta)) = serde_json::from_str::<Value>(&rep.metadata_json) else { continue };
            // bulk data is the representative instance's, whatever level the result is
            let instance_url =
                format!("{base}/dicom-web/studies/{}/series/{}/instances/{}", rep.study_uid, rep.series_uid, rep.sop_instance_uid);
            for (tag, value) in meta {
                let wanted = match self {
                    IncludeField::Tags(tags) => tags.contains(&tag),
                    IncludeField::All => match level {
                        storage::query::Level::Study => is_study_level(&tag),
                        storage::query::Level::Series => is_series_level(&tag),
                        storage::query::Level::Instance => true,
                    },
                    IncludeField::Defaults => false,
                };
                if !wanted || obj.contains_key(&tag) {
                    continue;
                }
                let value = if let Some(uri) = value.get("BulkDataURI").and_then(Value::as_str) {
                    // the cached document's placeholder becomes the instance's address
                    json!({ "vr": value["vr"], "BulkDataURI": uri.replace(storage::attrs::INSTANCE_URL, &instance_url) })
                } else {
                    value
                };
                obj.insert(tag, value);
            }
        }
        Ok(())
    }
}

/// Patient and study attributes (PS3.3 C.7.1.1, C.7.2.1/2): what `includefield=all` adds to
/// a study result.
fn is_study_level(tag: &str) -> bool {
    tag.starts_with("0010")
        || matches!(
            tag,
            "00080020" | "00080030" | "00080050" | "00080051" | "00080090" | "00080096" | "00081030" | "00081032"
                | "00081048" | "00081060" | "00081080" | "0020000D" | "00200010" | "00321032" | "00321033"
                | "00321060" | "00321064" | "00401001" | "00080080" | "00080081"
        )
}

/// General series and equipment attributes (PS3.3 C.7.3.1, C.7.5.1): what `includefield=all`
/// adds to a series result.
fn is_series_level(tag: &str) -> bool {
    matches!(
        tag,
        "00080021" | "00080031" | "00080060" | "00080070" | "00081010" | "0008103E" | "00081040" | "00081050"
            | "00081070" | "00081090" | "00081111" | "00180015" | "00181000" | "00181020" | "00181030"
            | "00185100" | "0020000E" | "00200011" | "00200052" | "00200060" | "00280108" | "00280109"
            | "00400244" | "00400245" | "00400253" | "00400254" | "00400260" | "00400275"
    )
}

impl CommonKeys {
    fn take(&mut self, key: &str, v: &str) -> ApiResult<()> {
        let num = |what: &str| v.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("{what} {v:?} is not a number")));
        match key {
            "limit" => self.limit = Some(num("limit")?),
            "offset" => self.offset = Some(num("offset")?),
            // matching is never fuzzy (PS3.18 8.3.4.4 lets a server ignore the flag; the
            // Warning below does not list it because exact matching is a correct answer)
            "fuzzymatching" => {}
            "includefield" => self.include.add(v)?,
            // PS3.18 8.3.4.1: keys the server cannot match on are ignored, with a warning
            other => self.ignored.push(other.to_string()),
        }
        Ok(())
    }
}

fn qido_response(results: Vec<(i64, Map<String, Value>)>, common: &CommonKeys) -> Response {
    let body: Vec<Value> = results.into_iter().map(|(_, o)| Value::Object(o)).collect();
    let status = if body.is_empty() { StatusCode::NO_CONTENT } else { StatusCode::OK };
    let mut resp = if status == StatusCode::NO_CONTENT {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
    };
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    if !common.ignored.is_empty() {
        let w = format!("299 readhub \"query keys not supported for matching, ignored: {}\"", common.ignored.join(", "));
        if let Ok(v) = HeaderValue::from_str(&w) {
            resp.headers_mut().insert(header::WARNING, v);
        }
    }
    resp
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

/// QIDO-RS series: `/series`, `/studies/{study}/series`
pub async fn search_series(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Option<Path<Vec<(String, String)>>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let mut q = storage::query::SeriesQuery { study_uid: PathUids::from(path)?.study, ..Default::default() };
    let mut common = CommonKeys::default();
    for (k, v) in &params {
        match k.as_str() {
            "StudyInstanceUID" | "0020000D" => {
                check_uid("StudyInstanceUID", v)?;
                q.study_uid = Some(v.clone())
            }
            "SeriesInstanceUID" | "0020000E" => q.series_uids = uid_values("SeriesInstanceUID", v)?,
            "Modality" | "00080060" => q.modality = Some(v.clone()),
            "SeriesNumber" | "00200011" => q.series_number = Some(v.clone()),
            other => common.take(other, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit, common.offset);
    let base = st.public_base(&headers);
    let rows = storage::query::search_series(&st.storage.db, caller.studies(), &q).await?;
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, "00080060", "CS", s(&r.modality));
            attr(&mut o, "0008103E", "LO", s(&r.series_description));
            attr(&mut o, "00081190", "UR", Some(Value::String(format!("{base}/dicom-web/studies/{}/series/{}", r.study_uid, r.series_uid))));
            attr(&mut o, "00180015", "CS", s(&r.body_part));
            attr(&mut o, "0020000D", "UI", Some(Value::String(r.study_uid.clone())));
            attr(&mut o, "0020000E", "UI", Some(Value::String(r.series_uid.clone())));
            attr(&mut o, "00200011", "IS", r.series_number.as_ref().and_then(|n| n.trim().parse::<i64>().ok()).map(|n| json!(n)));
            attr(&mut o, "00201209", "IS", Some(json!(r.num_instances)));
            (r.pk, o)
        })
        .collect();
    common.include.apply(&st, storage::query::Level::Series, &mut results, &base).await?;
    Ok(qido_response(results, &common))
}

fn uid_values(name: &str, v: &str) -> ApiResult<Vec<String>> {
    let list: Vec<String> = v.split([',', '\\']).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for u in &list {
        check_uid(name, u)?;
    }
    Ok(list)
}

/// QIDO-RS instances: `/instances`, `/studies/{study}/instances`,
/// `/studies/{study}/series/{series}/instances`
pub async fn search_instances(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Option<Path<Vec<(String, String)>>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let uids = PathUids::from(path)?;
    let mut q = storage::query::InstanceQuery { study_uid: uids.study, series_uid: uids.series, ..Default::default() };
    let mut common = CommonKeys::default();
    for (k, v) in &params {
        match k.as_str() {
            "StudyInstanceUID" | "0020000D" => {
                check_uid("StudyInstanceUID", v)?;
                q.study_uid = Some(v.clone())
            }
            "SeriesInstanceUID" | "0020000E" => {
                check_uid("SeriesInstanceUID", v)?;
                q.series_uid = Some(v.clone())
            }
            "SOPInstanceUID" | "00080018" => q.sop_instance_uids = uid_values("SOPInstanceUID", v)?,
            "SOPClassUID" | "00080016" => {
                check_uid("SOPClassUID", v)?;
                q.sop_class_uid = Some(v.clone())
            }
            "InstanceNumber" | "00200013" => q.instance_number = Some(v.clone()),
            other => common.take(other, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit, common.offset);
    let base = st.public_base(&headers);
    let rows = storage::query::search_instances(&st.storage.db, caller.studies(), &q).await?;
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, "00080016", "UI", Some(Value::String(r.sop_class_uid.clone())));
            attr(&mut o, "00080018", "UI", Some(Value::String(r.sop_instance_uid.clone())));
            attr(&mut o, "00080060", "CS", s(&r.modality));
            attr(&mut o, "00083002", "UI", Some(Value::String(r.transfer_syntax_uid.clone())));
            attr(
                &mut o,
                "00081190",
                "UR",
                Some(Value::String(format!("{base}/dicom-web/studies/{}/series/{}/instances/{}", r.study_uid, r.series_uid, r.sop_instance_uid))),
            );
            attr(&mut o, "0020000D", "UI", Some(Value::String(r.study_uid.clone())));
            attr(&mut o, "0020000E", "UI", Some(Value::String(r.series_uid.clone())));
            attr(&mut o, "00200013", "IS", r.instance_number.as_ref().and_then(|n| n.trim().parse::<i64>().ok()).map(|n| json!(n)));
            attr(&mut o, "00280008", "IS", r.number_of_frames.map(|n| json!(n)));
            attr(&mut o, "00280010", "US", r.rows.map(|n| json!(n)));
            attr(&mut o, "00280011", "US", r.columns.map(|n| json!(n)));
            (r.pk, o)
        })
        .collect();
    common.include.apply(&st, storage::query::Level::Instance, &mut results, &base).await?;
    Ok(qido_response(results, &common))
}

async fn find(st: &AppState, caller: &Caller, study: &str, series: &str, sop: &str) -> ApiResult<InstanceRow> {
    check_uid("StudyInstanceUID", study)?;
    check_uid("SeriesInstanceUID", series)?;
    check_uid("SOPInstanceUID", sop)?;
    storage::query::find_instance(&st.storage.db, caller.studies(), study, series, sop)
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
    let mut resp = stream_instances(&st, &headers, vec![inst])?;
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
    stream_instances(&st, &headers, rows)
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

/// One instance's bytes: streamed as stored, or decoded and re-encoded in `target`.
async fn instance_body(blobs: storage::BlobStore, inst: InstanceRow, target: Option<&'static str>) -> std::io::Result<(String, ByteStream)> {
    match target {
        None => {
            let body = blobs.get(&inst.blob_key).await.map_err(std::io::Error::other)?;
            Ok((inst.transfer_syntax_uid, body.into_stream().map(|c| c.map_err(std::io::Error::other)).boxed()))
        }
        Some(ts) => {
            let file = blobs.get_bytes(&inst.blob_key).await.map_err(std::io::Error::other)?;
            let out = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                use dicom_encoding::TransferSyntaxIndex;
                use dicom_pixeldata::Transcode;
                let obj = dicom_object::from_reader(&file[128..]).map_err(std::io::Error::other)?;
                let mut obj = crate::render::native_if_jpeg12(obj).map_err(|e| std::io::Error::other(e.to_string()))?;
                let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
                    .get(ts)
                    .ok_or_else(|| std::io::Error::other(format!("unknown transfer syntax {ts}")))?;
                obj.transcode(target).map_err(std::io::Error::other)?;
                let mut out = Vec::with_capacity(file.len() * 2);
                obj.write_all(&mut out).map_err(std::io::Error::other)?;
                Ok(out)
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok((ts.to_string(), futures::stream::once(async move { Ok(bytes::Bytes::from(out)) }).boxed()))
        }
    }
}

/// The stored files of `rows` as the client accepts them: as stored, or decoded to an
/// uncompressed syntax when that is what the client asks for (through dicom-pixeldata).
fn stream_instances(st: &AppState, headers: &HeaderMap, rows: Vec<InstanceRow>) -> ApiResult<Response> {
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
    let blobs = st.storage.blobs.clone();
    if bare {
        let (inst, target) = plan.into_iter().next().expect("one");
        let ts = target.map(str::to_string).unwrap_or_else(|| inst.transfer_syntax_uid.clone());
        let ct = format!("application/dicom; transfer-syntax={ts}");
        let stream = futures::stream::once(instance_body(blobs, inst, target)).map_ok(|(_, body)| body).try_flatten();
        let mut resp = Response::new(Body::from_stream(stream));
        if !crate::is_native(&ts) {
            resp.extensions_mut().insert(crate::Precompressed);
        }
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).map_err(|e| ApiError::Internal(e.to_string()))?);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        return Ok(resp);
    }
    let boundary = format!("readhub-{}", &plan[0].0.sha256[..24]);
    let all_compressed = plan.iter().all(|(inst, target)| !crate::is_native(target.unwrap_or(&inst.transfer_syntax_uid)));
    let b = boundary.clone();
    let parts = futures::stream::iter(plan)
        .then(move |(inst, target)| {
            let blobs = blobs.clone();
            let b = b.clone();
            async move {
                let (ts, body) = instance_body(blobs, inst, target).await?;
                let head = format!("--{b}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n\r\n");
                Ok::<_, std::io::Error>(
                    futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
                        .chain(body)
                        .chain(futures::stream::once(async { Ok(bytes::Bytes::from_static(b"\r\n")) })),
                )
            }
        })
        .try_flatten();
    let tail = format!("--{boundary}--\r\n");
    let body = parts.chain(futures::stream::once(async move { Ok(bytes::Bytes::from(tail)) }));
    let mut resp = Response::new(Body::from_stream(body));
    if all_compressed {
        resp.extensions_mut().insert(crate::Precompressed);
    }
    multipart_headers(resp, "application/dicom", &boundary)
}

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
    rendered(st, caller, headers, pick.study_uid, pick.series_uid, pick.sop_instance_uid, 1, params).await
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
    let bytes = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let is_ecg = crate::ecg::is_waveform(&inst.sop_class_uid);
    let site = storage::sites::get_site(&st.storage.db, inst.site_id).await?.map(|s| s.name).unwrap_or_default();
    let out = tokio::task::spawn_blocking(move || {
        if is_ecg {
            crate::ecg::render_instance(&bytes, &p, &site)
        } else {
            render::render_frame(&bytes, frame, &p)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut resp = Response::new(Body::from(out.bytes));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(out.content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    Ok(resp)
}

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
        body.push_str(&json.replace(storage::attrs::INSTANCE_URL, &url));
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
    let parsed = (tag.len() == 8)
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

/// Decoded ECG samples for reading: `GET /api/waveforms/{study}/{series}/{sop}`, with
/// samples in µV per lead, the sampling frequency, filters, and the device's measurements.
pub async fn waveform(
    State(st): State<AppState>,
    caller: Caller,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    if !crate::ecg::is_waveform(&inst.sop_class_uid) {
        return Err(ApiError::Unprocessable(format!("{sop} is not an ECG waveform")));
    }
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    tokio::task::spawn_blocking(move || {
        let obj = dicom_object::from_reader(&file[128..]).map_err(|e| ApiError::Internal(format!("cannot read stored instance: {e}")))?;
        let wf = crate::ecg::decode(&obj).map_err(|e| ApiError::Unprocessable(format!("waveform cannot be decoded: {e}")))?;
        Ok(axum::Json(json!({
            "sop_instance_uid": sop,
            "sampling_frequency": wf.sampling_frequency,
            "unit": "uV",
            "filter_low_hz": wf.filter_low_hz,
            "filter_high_hz": wf.filter_high_hz,
            "notch_hz": wf.notch_hz,
            "channels": wf.channels,
            "annotations": crate::ecg::annotations(&obj),
        })))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// WADO-RS frames (PS3.18 8.7.4): `…/instances/{sop}/frames/1,3`, one part per frame.
/// With `transfer-syntax=*` (or the stored syntax) a compressed frame is sent as stored;
/// otherwise frames are decoded to native little-endian pixels (the default syntax).
pub async fn retrieve_frames(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, sop, frames)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let inst = find(&st, &caller, &study, &series, &sop).await?;
    let list: Vec<u32> = frames
        .split(',')
        .map(|f| f.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<Vec<_>>>()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{frames:?} is not a list of frame numbers (1, 2, …)")))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let stored_ts = inst.transfer_syntax_uid.clone();
    let as_stored = requested_ts(&accept).iter().any(|t| t == "*" || *t == stored_ts);
    let file = st.storage.blobs.get_bytes(&inst.blob_key).await?;
    let parts = tokio::task::spawn_blocking(move || -> ApiResult<Vec<(String, Vec<u8>)>> {
        use dicom_pixeldata::PixelDecoder;
        let obj = dicom_object::from_reader(&file[128..]).map_err(|e| ApiError::Internal(format!("cannot read stored instance: {e}")))?;
        let obj = if as_stored { obj } else { crate::render::native_if_jpeg12(obj)? };
        let n_frames = obj
            .element_opt(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        if let Some(bad) = list.iter().find(|f| **f > n_frames) {
            return Err(ApiError::BadRequest(format!("frame {bad} is out of range: the instance has {n_frames} frame(s)")));
        }
        let pixels = obj
            .element_opt(dicom_dictionary_std::tags::PIXEL_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| ApiError::NotFound("the instance has no pixel data".into()))?;
        let native = format!("application/octet-stream; transfer-syntax={}", "1.2.840.10008.1.2.1");
        match pixels.value() {
            dicom_core::value::Value::PixelSequence(seq) if as_stored && seq.fragments().len() == n_frames as usize || as_stored && n_frames == 1 => {
                let frags = seq.fragments();
                let ct = format!("application/octet-stream; transfer-syntax={stored_ts}");
                Ok(list
                    .iter()
                    .map(|f| {
                        let bytes = if frags.len() == n_frames as usize { frags[*f as usize - 1].clone() } else { frags.concat() };
                        (ct.clone(), bytes)
                    })
                    .collect())
            }
            dicom_core::value::Value::Primitive(p) => {
                let all = p.to_bytes();
                let size = all.len() / n_frames as usize;
                Ok(list.iter().map(|f| (native.clone(), all[(*f as usize - 1) * size..*f as usize * size].to_vec())).collect())
            }
            _ => list
                .iter()
                .map(|f| {
                    let d = obj
                        .decode_pixel_data_frame(f - 1)
                        .map_err(|e| ApiError::Unprocessable(format!("frame {f} cannot be decoded: {e}")))?;
                    Ok((native.clone(), d.data().to_vec()))
                })
                .collect(),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    multipart_response("application/octet-stream", &format!("readhub-{}", &inst.sha256[..24]), &parts)
}
