//! Query/Retrieve (PS3.4 C): Patient Root and Study Root C-FIND at the patient, study,
//! series and image levels, and the instances a C-MOVE or C-GET names. Every query runs
//! through the same index queries and the same study filter as QIDO-RS: a site's AE titles
//! see their site's studies, a workstation registered with a reading pool sees the pool's.
//! Matching: the keys QIDO matches on (Patient ID, Patient's Name with wildcards, Accession
//! Number, Study Date ranges, Modalities in Study, UID lists, Series Instance UID, Modality,
//! SOP Instance UID); every other key is a return key (PS3.4 C.2.2.2: an SCP that does not
//! match on a key returns it).

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use storage::query::{InstanceQuery, InstanceRow, SeriesQuery, StudyFilter, StudyQuery};
use storage::Storage;

use crate::mwl::{Identifier, MAX_ANSWERS};

/// The Q/R information models readhub serves.
pub const FIND: [&str; 2] = [uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND, uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND];
pub const MOVE: [&str; 2] = [uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE, uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE];
pub const GET: [&str; 2] = [uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET, uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET];

/// Query/Retrieve Level (0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn of(identifier: &Identifier) -> Result<Level, String> {
        match identifier.text(tags::QUERY_RETRIEVE_LEVEL).to_ascii_uppercase().as_str() {
            "PATIENT" => Ok(Level::Patient),
            "STUDY" => Ok(Level::Study),
            "SERIES" => Ok(Level::Series),
            "IMAGE" => Ok(Level::Image),
            other => Err(format!("Query/Retrieve Level {other:?}: PATIENT, STUDY, SERIES or IMAGE")),
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

fn opt(v: String) -> Option<String> {
    let v = v.trim().to_string();
    (!v.is_empty() && v != "*").then_some(v)
}

/// A UID list key (backslash-separated).
fn uid_list(identifier: &Identifier, tag: Tag) -> Vec<String> {
    identifier.text(tag).split('\\').map(|s| s.trim().trim_end_matches('\0').to_string()).filter(|s| !s.is_empty()).collect()
}

fn study_query(identifier: &Identifier) -> StudyQuery {
    StudyQuery {
        study_uids: uid_list(identifier, tags::STUDY_INSTANCE_UID),
        patient_id: opt(identifier.text(tags::PATIENT_ID)),
        issuer_of_patient_id: opt(identifier.text(tags::ISSUER_OF_PATIENT_ID)),
        patient_name: opt(identifier.text(tags::PATIENT_NAME)),
        accession_number: opt(identifier.text(tags::ACCESSION_NUMBER)),
        study_date: opt(identifier.text(tags::STUDY_DATE)),
        modalities_in_study: identifier.text(tags::MODALITIES_IN_STUDY).split('\\').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
        limit: Some(MAX_ANSWERS as i64 + 1),
        offset: None,
    }
}

fn put(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

/// An answer: the values readhub has for the keys asked (empty for the others), the level,
/// and Retrieve AE Title (where to C-MOVE/C-GET from: readhub).
fn answer(identifier: &Identifier, level: Level, values: &InMemDicomObject, our_ae: &str) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    put(&mut out, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    for el in identifier.obj.iter() {
        let tag = el.header().tag;
        if tag == tags::SPECIFIC_CHARACTER_SET || el.vr() == VR::SQ {
            continue;
        }
        match values.element_opt(tag).ok().flatten() {
            Some(v) => out.put(v.clone()),
            None => out.put(DataElement::new(tag, el.vr(), PrimitiveValue::Empty)),
        };
    }
    put(&mut out, tags::QUERY_RETRIEVE_LEVEL, VR::CS, level.as_str());
    put(&mut out, tags::RETRIEVE_AE_TITLE, VR::AE, our_ae);
    out
}

fn patient_values(o: &mut InMemDicomObject, s: &storage::query::StudyRow) {
    put(o, tags::PATIENT_NAME, VR::PN, s.patient_name.as_deref().unwrap_or(""));
    put(o, tags::PATIENT_ID, VR::LO, &s.patient_id);
    put(o, tags::ISSUER_OF_PATIENT_ID, VR::LO, &s.issuer_of_patient_id);
    put(o, tags::PATIENT_BIRTH_DATE, VR::DA, s.patient_birth_date.as_deref().unwrap_or(""));
    put(o, tags::PATIENT_SEX, VR::CS, s.patient_sex.as_deref().unwrap_or(""));
}

fn study_values(s: &storage::query::StudyRow) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    patient_values(&mut o, s);
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &s.study_uid);
    put(&mut o, tags::STUDY_DATE, VR::DA, s.study_date.as_deref().unwrap_or(""));
    put(&mut o, tags::STUDY_TIME, VR::TM, s.study_time.as_deref().unwrap_or(""));
    put(&mut o, tags::ACCESSION_NUMBER, VR::SH, s.accession_number.as_deref().unwrap_or(""));
    put(&mut o, tags::STUDY_ID, VR::SH, s.study_id.as_deref().unwrap_or(""));
    put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, s.study_description.as_deref().unwrap_or(""));
    put(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, s.referring_physician.as_deref().unwrap_or(""));
    put(&mut o, tags::MODALITIES_IN_STUDY, VR::CS, &s.modalities.join("\\"));
    put(&mut o, tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, &s.num_series.to_string());
    put(&mut o, tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, &s.num_instances.to_string());
    o
}

/// Answer a Q/R C-FIND within `scope`. Err: the identifier cannot be answered (its level).
pub async fn find(storage: &Storage, scope: StudyFilter, identifier: &Identifier, our_ae: &str) -> Result<Vec<InMemDicomObject>, String> {
    let level = Level::of(identifier)?;
    let db = &storage.db;
    let err = |e: storage::Error| format!("the index cannot be read: {e}");
    let mut out = Vec::new();
    match level {
        Level::Patient | Level::Study => {
            let studies = storage::query::search_studies(db, scope, &study_query(identifier)).await.map_err(err)?;
            if level == Level::Study {
                out = studies.iter().map(|s| answer(identifier, level, &study_values(s), our_ae)).collect();
            } else {
                // one answer per patient (ID and issuer), with the counts of what it holds
                let mut seen: Vec<(String, String)> = Vec::new();
                for s in &studies {
                    let key = (s.patient_id.clone(), s.issuer_of_patient_id.clone());
                    if seen.contains(&key) {
                        continue;
                    }
                    seen.push(key.clone());
                    let mine: Vec<_> = studies.iter().filter(|t| (t.patient_id.clone(), t.issuer_of_patient_id.clone()) == key).collect();
                    let mut v = InMemDicomObject::new_empty();
                    patient_values(&mut v, s);
                    put(&mut v, tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, &mine.len().to_string());
                    put(&mut v, tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, &mine.iter().map(|t| t.num_series).sum::<i64>().to_string());
                    put(&mut v, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, &mine.iter().map(|t| t.num_instances).sum::<i64>().to_string());
                    out.push(answer(identifier, level, &v, our_ae));
                }
            }
        }
        Level::Series => {
            let study = uid_list(identifier, tags::STUDY_INSTANCE_UID).into_iter().next();
            let q = SeriesQuery {
                study_uid: study,
                series_uids: uid_list(identifier, tags::SERIES_INSTANCE_UID),
                modality: opt(identifier.text(tags::MODALITY)),
                series_number: opt(identifier.text(tags::SERIES_NUMBER)),
                limit: Some(MAX_ANSWERS as i64 + 1),
                offset: None,
            };
            for s in storage::query::search_series(db, scope, &q).await.map_err(err)? {
                let mut v = InMemDicomObject::new_empty();
                put(&mut v, tags::STUDY_INSTANCE_UID, VR::UI, &s.study_uid);
                put(&mut v, tags::SERIES_INSTANCE_UID, VR::UI, &s.series_uid);
                put(&mut v, tags::MODALITY, VR::CS, s.modality.as_deref().unwrap_or(""));
                put(&mut v, tags::SERIES_NUMBER, VR::IS, s.series_number.as_deref().unwrap_or(""));
                put(&mut v, tags::SERIES_DESCRIPTION, VR::LO, s.series_description.as_deref().unwrap_or(""));
                put(&mut v, tags::BODY_PART_EXAMINED, VR::CS, s.body_part.as_deref().unwrap_or(""));
                put(&mut v, tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, &s.num_instances.to_string());
                out.push(answer(identifier, level, &v, our_ae));
            }
        }
        Level::Image => {
            for i in instances(storage, scope, identifier, level).await? {
                let mut v = InMemDicomObject::new_empty();
                put(&mut v, tags::STUDY_INSTANCE_UID, VR::UI, &i.study_uid);
                put(&mut v, tags::SERIES_INSTANCE_UID, VR::UI, &i.series_uid);
                put(&mut v, tags::SOP_INSTANCE_UID, VR::UI, &i.sop_instance_uid);
                put(&mut v, tags::SOP_CLASS_UID, VR::UI, &i.sop_class_uid);
                put(&mut v, tags::INSTANCE_NUMBER, VR::IS, i.instance_number.as_deref().unwrap_or(""));
                if let Some(n) = i.number_of_frames {
                    put(&mut v, tags::NUMBER_OF_FRAMES, VR::IS, &n.to_string());
                }
                out.push(answer(identifier, level, &v, our_ae));
            }
        }
    }
    Ok(out)
}

/// The instances a C-MOVE or C-GET names (its level and the UIDs of that level and above),
/// within `scope`. A study-level request names its studies; a patient-level one, the
/// patient's studies.
pub async fn instances(storage: &Storage, scope: StudyFilter, identifier: &Identifier, level: Level) -> Result<Vec<InstanceRow>, String> {
    let db = &storage.db;
    let err = |e: storage::Error| format!("the index cannot be read: {e}");
    let studies: Vec<String> = match level {
        Level::Patient => {
            let pid = opt(identifier.text(tags::PATIENT_ID)).ok_or("a patient-level retrieve needs the Patient ID")?;
            let q = StudyQuery { patient_id: Some(pid), limit: Some(MAX_ANSWERS as i64), ..Default::default() };
            storage::query::search_studies(db, scope, &q).await.map_err(err)?.into_iter().map(|s| s.study_uid).collect()
        }
        _ => uid_list(identifier, tags::STUDY_INSTANCE_UID),
    };
    let series = uid_list(identifier, tags::SERIES_INSTANCE_UID);
    let sops = uid_list(identifier, tags::SOP_INSTANCE_UID);
    if studies.is_empty() && level != Level::Image {
        return Err("the request names no Study Instance UID".into());
    }
    let mut out = Vec::new();
    let queries: Vec<InstanceQuery> = match level {
        Level::Patient | Level::Study => studies.iter().map(|s| InstanceQuery { study_uid: Some(s.clone()), ..Default::default() }).collect(),
        Level::Series => series.iter().map(|s| InstanceQuery { study_uid: studies.first().cloned(), series_uid: Some(s.clone()), ..Default::default() }).collect(),
        Level::Image => vec![InstanceQuery { study_uid: studies.first().cloned(), series_uid: series.first().cloned(), sop_instance_uids: sops, ..Default::default() }],
    };
    for q in queries {
        let q = InstanceQuery { limit: Some(100_000), ..q };
        out.extend(storage::query::search_instances(db, scope, &q).await.map_err(err)?);
    }
    Ok(out)
}
