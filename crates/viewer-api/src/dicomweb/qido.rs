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
use super::{attr, check_uid, pn, s, PathUids, DICOM_JSON};

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
