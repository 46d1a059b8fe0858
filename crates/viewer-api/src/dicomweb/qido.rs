//! QIDO-RS (PS3.18 10.6): search for studies, series and instances, scoped like every read.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use storage::query::StudyQuery;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::{attr, check_uid, json_tag, key, pn, query_tag, s, PathUids, DICOM_JSON};

/// QIDO-RS: `GET /dicom-web/studies?…`
pub async fn search_studies(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (q, common) = study_query(&params)?;
    let base = st.public_base(&headers);
    let rows = storage::query::search_studies(&st.storage.db, caller.studies(), &q).await?;
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, tags::STUDY_DATE, VR::DA, s(&r.study_date));
            attr(&mut o, tags::STUDY_TIME, VR::TM, s(&r.study_time));
            attr(&mut o, tags::ACCESSION_NUMBER, VR::SH, s(&r.accession_number));
            o.insert(key(tags::MODALITIES_IN_STUDY), json!({ "vr": "CS", "Value": r.modalities }));
            attr(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, pn(&r.referring_physician));
            attr(&mut o, tags::STUDY_DESCRIPTION, VR::LO, s(&r.study_description));
            attr(&mut o, tags::RETRIEVE_URL, VR::UR, Some(Value::String(format!("{base}/dicom-web/studies/{}", r.study_uid))));
            attr(&mut o, tags::PATIENT_NAME, VR::PN, pn(&r.patient_name));
            attr(&mut o, tags::PATIENT_ID, VR::LO, Some(Value::String(r.patient_id.clone())));
            attr(&mut o, tags::ISSUER_OF_PATIENT_ID, VR::LO, Some(Value::String(r.issuer_of_patient_id.clone())));
            attr(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, s(&r.patient_birth_date));
            attr(&mut o, tags::PATIENT_SEX, VR::CS, s(&r.patient_sex));
            attr(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, Some(Value::String(r.study_uid.clone())));
            attr(&mut o, tags::STUDY_ID, VR::SH, s(&r.study_id));
            attr(&mut o, tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, Some(json!(r.num_series)));
            attr(&mut o, tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, Some(json!(r.num_instances)));
            (r.pk.get(), o)
        })
        .collect();
    common.include.apply(&st, storage::query::Level::Study, &mut results, &base).await?;
    Ok(qido_response(results, &common))
}

/// The study query a QIDO-RS request's parameters ask for (no I/O: parsing only).
pub(crate) fn study_query(params: &[(String, String)]) -> ApiResult<(StudyQuery, CommonKeys)> {
    let mut q = StudyQuery::default();
    let mut common = CommonKeys::default();
    for (k, v) in params {
        let list = || v.split([',', '\\']).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        match query_tag(k) {
            Some(tags::PATIENT_NAME) => q.patient_name = Some(v.clone()),
            Some(tags::PATIENT_ID) => q.patient_id = Some(v.clone()),
            Some(tags::ISSUER_OF_PATIENT_ID) => q.issuer_of_patient_id = Some(v.clone()),
            Some(tags::ACCESSION_NUMBER) => q.accession_number = Some(v.clone()),
            Some(tags::STUDY_DATE) => q.study_date = Some(v.clone()),
            Some(tags::STUDY_INSTANCE_UID) => {
                let uids = list();
                for u in &uids {
                    check_uid("StudyInstanceUID", u)?;
                }
                q.study_uids = uids;
            }
            Some(tags::MODALITIES_IN_STUDY) => q.modalities_in_study = list(),
            _ => common.take(k, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit(), common.offset);
    Ok((q, common))
}

/// The most results one QIDO-RS response holds (without `limit`, or with a larger one): what
/// a response costs must not grow with the archive. Page with `limit` and `offset`.
const MAX_RESULTS: i64 = 10_000;

/// Query keys every QIDO-RS level shares.
#[derive(Default)]
pub(crate) struct CommonKeys {
    limit: Option<i64>,
    offset: Option<i64>,
    include: IncludeField,
    ignored: Vec<String>,
}

/// Distinct attributes one query may name in `includefield`.
const MAX_INCLUDEFIELD: usize = 512;

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
            } else if !item.is_ascii() {
                // found by fuzzing: dicom-dictionary-std's parse_tag slices at byte 4 and
                // panics inside a multi-byte character ("00\u{FFFD}UID")
                return Err(ApiError::BadRequest(format!("includefield {item:?} is neither a DICOM keyword nor a tag (ggggeeee)")));
            } else {
                let t = dicom_dictionary_std::StandardDataDictionary.parse_tag(item).ok_or_else(|| {
                    ApiError::BadRequest(format!("includefield {item:?} is neither a DICOM keyword nor a tag (ggggeeee)"))
                })?;
                format!("{:04X}{:04X}", t.group(), t.element())
            };
            match self {
                IncludeField::All => {}
                // each attribute once, and not without bound: the list is the client's
                IncludeField::Tags(tags) if tags.contains(&tag) => {}
                IncludeField::Tags(tags) if tags.len() >= MAX_INCLUDEFIELD => {
                    return Err(ApiError::BadRequest(format!(
                        "at most {MAX_INCLUDEFIELD} includefield attributes (or includefield=all)"
                    )))
                }
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
                        storage::query::Level::Study => json_tag(&tag).is_some_and(is_study_level),
                        storage::query::Level::Series => json_tag(&tag).is_some_and(is_series_level),
                        storage::query::Level::Instance => true,
                    },
                    IncludeField::Defaults => false,
                };
                if !wanted || obj.contains_key(&tag) {
                    continue;
                }
                let value = if let Some(uri) = value.get("BulkDataURI").and_then(Value::as_str) {
                    // the cached document's placeholder becomes the instance's address
                    json!({ "vr": value["vr"], "BulkDataURI": uri.replace(storage::attrs::BULK_DATA, &format!("{instance_url}/bulkdata/")) })
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
fn is_study_level(tag: Tag) -> bool {
    tag.group() == 0x0010
        || matches!(
            tag,
            tags::STUDY_DATE | tags::STUDY_TIME | tags::ACCESSION_NUMBER | tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE | tags::REFERRING_PHYSICIAN_NAME | tags::REFERRING_PHYSICIAN_IDENTIFICATION_SEQUENCE | tags::STUDY_DESCRIPTION | tags::PROCEDURE_CODE_SEQUENCE
                | tags::PHYSICIANS_OF_RECORD | tags::NAME_OF_PHYSICIANS_READING_STUDY | tags::ADMITTING_DIAGNOSES_DESCRIPTION | tags::STUDY_INSTANCE_UID | tags::STUDY_ID | tags::REQUESTING_PHYSICIAN | tags::REQUESTING_SERVICE
                | tags::REQUESTED_PROCEDURE_DESCRIPTION | tags::REQUESTED_PROCEDURE_CODE_SEQUENCE | tags::REQUESTED_PROCEDURE_ID | tags::INSTITUTION_NAME | tags::INSTITUTION_ADDRESS
        )
}

/// General series and equipment attributes (PS3.3 C.7.3.1, C.7.5.1): what `includefield=all`
/// adds to a series result.
fn is_series_level(tag: Tag) -> bool {
    matches!(
        tag,
        tags::SERIES_DATE | tags::SERIES_TIME | tags::MODALITY | tags::MANUFACTURER | tags::STATION_NAME | tags::SERIES_DESCRIPTION | tags::INSTITUTIONAL_DEPARTMENT_NAME | tags::PERFORMING_PHYSICIAN_NAME
            | tags::OPERATORS_NAME | tags::MANUFACTURER_MODEL_NAME | tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE | tags::BODY_PART_EXAMINED | tags::DEVICE_SERIAL_NUMBER | tags::SOFTWARE_VERSIONS | tags::PROTOCOL_NAME
            | tags::PATIENT_POSITION | tags::SERIES_INSTANCE_UID | tags::SERIES_NUMBER | tags::FRAME_OF_REFERENCE_UID | tags::LATERALITY | tags::SMALLEST_PIXEL_VALUE_IN_SERIES | tags::LARGEST_PIXEL_VALUE_IN_SERIES
            | tags::PERFORMED_PROCEDURE_STEP_START_DATE | tags::PERFORMED_PROCEDURE_STEP_START_TIME | tags::PERFORMED_PROCEDURE_STEP_ID | tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION | tags::PERFORMED_PROTOCOL_CODE_SEQUENCE | tags::REQUEST_ATTRIBUTES_SEQUENCE
    )
}

impl CommonKeys {
    /// The limit to apply: the client's, at most [`MAX_RESULTS`].
    fn limit(&self) -> Option<i64> {
        Some(self.limit.unwrap_or(MAX_RESULTS).clamp(0, MAX_RESULTS))
    }

    fn take(&mut self, key: &str, v: &str) -> ApiResult<()> {
        let num = |what: &str| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest(format!("{what} {v:?} is not a number (0, 1, 2, …)")))
        };
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
    // PS3.18 8.3.4.4.1: a server that returns fewer matches than exist says so
    let capped = body.len() as i64 >= MAX_RESULTS && common.limit.is_none_or(|l| l > MAX_RESULTS);
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
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    if capped {
        let w = format!("299 readhub \"at most {MAX_RESULTS} matches are returned at once; page with limit and offset\"");
        if let Ok(v) = HeaderValue::from_str(&w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// QIDO-RS series: `/series`, `/studies/{study}/series`
pub async fn search_series(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: Option<Path<Vec<(String, String)>>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (q, common) = series_query(PathUids::from(path)?.study, &params)?;
    let base = st.public_base(&headers);
    let rows = storage::query::search_series(&st.storage.db, caller.studies(), &q).await?;
    series_results(st, rows, common, base).await
}

/// The series query of a QIDO-RS request (no I/O: parsing only).
pub(crate) fn series_query(study_uid: Option<String>, params: &[(String, String)]) -> ApiResult<(storage::query::SeriesQuery, CommonKeys)> {
    let mut q = storage::query::SeriesQuery { study_uid, ..Default::default() };
    let mut common = CommonKeys::default();
    for (k, v) in params {
        match query_tag(k) {
            Some(tags::STUDY_INSTANCE_UID) => {
                check_uid("StudyInstanceUID", v)?;
                q.study_uid = Some(v.clone())
            }
            Some(tags::SERIES_INSTANCE_UID) => q.series_uids = uid_values("SeriesInstanceUID", v)?,
            Some(tags::MODALITY) => q.modality = Some(v.clone()),
            Some(tags::SERIES_NUMBER) => q.series_number = Some(v.clone()),
            _ => common.take(k, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit(), common.offset);
    Ok((q, common))
}

async fn series_results(st: AppState, rows: Vec<storage::query::SeriesRow>, common: CommonKeys, base: String) -> ApiResult<Response> {
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, tags::MODALITY, VR::CS, s(&r.modality));
            attr(&mut o, tags::SERIES_DESCRIPTION, VR::LO, s(&r.series_description));
            attr(&mut o, tags::RETRIEVE_URL, VR::UR, Some(Value::String(format!("{base}/dicom-web/studies/{}/series/{}", r.study_uid, r.series_uid))));
            attr(&mut o, tags::BODY_PART_EXAMINED, VR::CS, s(&r.body_part));
            attr(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, Some(Value::String(r.study_uid.to_string())));
            attr(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, Some(Value::String(r.series_uid.to_string())));
            attr(&mut o, tags::SERIES_NUMBER, VR::IS, r.series_number.as_ref().and_then(|n| n.trim().parse::<i64>().ok()).map(|n| json!(n)));
            attr(&mut o, tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, Some(json!(r.num_instances)));
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
    let (q, common) = instance_query(uids.study, uids.series, &params)?;
    let base = st.public_base(&headers);
    let rows = storage::query::search_instances(&st.storage.db, caller.studies(), &q).await?;
    instance_results(st, rows, common, base).await
}

/// The instance query of a QIDO-RS request (no I/O: parsing only).
pub(crate) fn instance_query(
    study_uid: Option<String>,
    series_uid: Option<String>,
    params: &[(String, String)],
) -> ApiResult<(storage::query::InstanceQuery, CommonKeys)> {
    let mut q = storage::query::InstanceQuery { study_uid, series_uid, ..Default::default() };
    let mut common = CommonKeys::default();
    for (k, v) in params {
        match query_tag(k) {
            Some(tags::STUDY_INSTANCE_UID) => {
                check_uid("StudyInstanceUID", v)?;
                q.study_uid = Some(v.clone())
            }
            Some(tags::SERIES_INSTANCE_UID) => {
                check_uid("SeriesInstanceUID", v)?;
                q.series_uid = Some(v.clone())
            }
            Some(tags::SOP_INSTANCE_UID) => q.sop_instance_uids = uid_values("SOPInstanceUID", v)?,
            Some(tags::SOP_CLASS_UID) => {
                check_uid("SOPClassUID", v)?;
                q.sop_class_uid = Some(v.clone())
            }
            Some(tags::INSTANCE_NUMBER) => q.instance_number = Some(v.clone()),
            _ => common.take(k, v)?,
        }
    }
    (q.limit, q.offset) = (common.limit(), common.offset);
    Ok((q, common))
}

async fn instance_results(st: AppState, rows: Vec<storage::query::InstanceRow>, common: CommonKeys, base: String) -> ApiResult<Response> {
    let mut results: Vec<(i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            attr(&mut o, tags::SOP_CLASS_UID, VR::UI, Some(Value::String(r.sop_class_uid.clone())));
            attr(&mut o, tags::SOP_INSTANCE_UID, VR::UI, Some(Value::String(r.sop_instance_uid.to_string())));
            attr(&mut o, tags::MODALITY, VR::CS, s(&r.modality));
            attr(&mut o, tags::AVAILABLE_TRANSFER_SYNTAX_UID, VR::UI, Some(Value::String(r.transfer_syntax_uid.clone())));
            attr(
                &mut o,
                tags::RETRIEVE_URL,
                VR::UR,
                Some(Value::String(format!("{base}/dicom-web/studies/{}/series/{}/instances/{}", r.study_uid, r.series_uid, r.sop_instance_uid))),
            );
            attr(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, Some(Value::String(r.study_uid.to_string())));
            attr(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, Some(Value::String(r.series_uid.to_string())));
            attr(&mut o, tags::INSTANCE_NUMBER, VR::IS, r.instance_number.as_ref().and_then(|n| n.trim().parse::<i64>().ok()).map(|n| json!(n)));
            attr(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, r.number_of_frames.map(|n| json!(n)));
            attr(&mut o, tags::ROWS, VR::US, r.rows.map(|n| json!(n)));
            attr(&mut o, tags::COLUMNS, VR::US, r.columns.map(|n| json!(n)));
            (r.pk, o)
        })
        .collect();
    common.include.apply(&st, storage::query::Level::Instance, &mut results, &base).await?;
    Ok(qido_response(results, &common))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includefield_names_each_attribute_once_and_not_without_bound() {
        let mut f = IncludeField::default();
        f.add(&vec!["PatientAge"; 2000].join(",")).unwrap();
        assert!(matches!(&f, IncludeField::Tags(t) if t.len() == 1), "2,000 repeats are one attribute");
        let distinct: Vec<String> = (0..MAX_INCLUDEFIELD as u32 + 1).map(|i| format!("0009{i:04X}")).collect();
        let mut f = IncludeField::default();
        assert!(f.add(&distinct[..MAX_INCLUDEFIELD].join(",")).is_ok());
        assert!(f.add(&distinct[MAX_INCLUDEFIELD]).is_err(), "one more is refused");
    }
}
