//! Modality Worklist C-FIND (PS3.4 K): a site's modality asks for its scheduled procedure
//! steps and readhub answers from the site's open orders, so demographics and the
//! accession number are not typed at the modality. The orders themselves belong to the
//! worklist; the gateway sees them through [`WorklistSource`], as plain entries.
//!
//! Matching keys: Scheduled Procedure Step Start Date (single or range), Modality and
//! Scheduled Station AE Title (inside Scheduled Procedure Step Sequence), Patient ID,
//! Patient's Name (wildcards, any name group), Accession Number. Other keys are return keys
//! (PS3.4 C.2.2.2: an SCP ignores matching on keys it does not support). Answers carry the
//! keys asked for, in the character set the modality asked in (UTF-8 when it asked in none
//! and a value needs more than ASCII).

use std::future::Future;
use std::pin::Pin;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use readhub_types::SiteId;

/// The Modality Worklist Information Model - FIND SOP Class.
pub const SOP_CLASS: &str = uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND;

/// The most bytes of a C-FIND identifier (a query is a few hundred bytes).
pub const MAX_IDENTIFIER: usize = 64 * 1024;

/// The most answers to one C-FIND (a modality's day is tens; a query that matches more is
/// answered with the first ones and a warning in the log).
pub const MAX_ANSWERS: usize = 1000;

/// What a modality asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MwlQuery {
    pub scheduled_date: String,
    pub modality: String,
    pub station_ae: String,
    pub patient_id: String,
    pub patient_name: String,
    pub accession_number: String,
}

/// One scheduled procedure step, as the worklist has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MwlEntry {
    pub patient_name: String,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub birth_date: String,
    pub sex: String,
    pub accession_number: String,
    pub study_uid: String,
    pub requested_procedure_id: String,
    pub requested_procedure_description: String,
    pub procedure_code: String,
    /// STAT, HIGH or ROUTINE
    pub priority: String,
    pub requesting_physician: String,
    pub requesting_service: String,
    pub clinical_history: String,
    pub reason: String,
    pub modality: String,
    pub station_ae: String,
    pub start_date: String,
    pub start_time: String,
    pub step_id: String,
}

/// Where the gateway reads a site's modality worklist (the worklist crate's orders, wired
/// by the binary: the gateway does not depend on the worklist).
pub trait WorklistSource: Send + Sync + std::fmt::Debug {
    fn modality_worklist(&self, site: SiteId, query: MwlQuery) -> Pin<Box<dyn Future<Output = Result<Vec<MwlEntry>, String>> + Send + '_>>;
    /// The studies a reading pool's workstation may query and retrieve (the worklist's
    /// visibility rule, as QIDO applies it to the pool's readers).
    fn pool_scope(&self, pool: readhub_types::PoolId) -> storage::query::StudyFilter;
}

/// A source with no orders (tests of the gateway alone).
#[derive(Debug, Default)]
pub struct NoWorklist;

impl WorklistSource for NoWorklist {
    fn modality_worklist(&self, _: SiteId, _: MwlQuery) -> Pin<Box<dyn Future<Output = Result<Vec<MwlEntry>, String>> + Send + '_>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn pool_scope(&self, _: readhub_types::PoolId) -> storage::query::StudyFilter {
        storage::query::StudyFilter::Nothing
    }
}

pub(crate) fn text(o: &InMemDicomObject, tag: Tag) -> String {
    o.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string()).unwrap_or_default()
}

/// A C-FIND identifier as read: its elements, with text still as dicom-rs read it (each
/// char one byte), and the Specific Character Set it was written in.
#[derive(Debug, Clone)]
pub struct Identifier {
    pub obj: InMemDicomObject,
    pub charset_terms: Vec<String>,
}

impl Identifier {
    /// A text key, decoded in the identifier's character set.
    pub fn text(&self, tag: Tag) -> String {
        decoded(&self.obj, tag, &self.charset_terms)
    }
}

fn decoded(o: &InMemDicomObject, tag: Tag, terms: &[String]) -> String {
    let raw = text(o, tag);
    storage::charset::decode(&storage::charset::latin1_bytes(&raw), terms, &storage::charset::DecodePolicy::default())
}

/// Read a C-FIND identifier (from a peer: walked with bounded length and nesting first).
pub fn parse_identifier(ts_uid: &str, bytes: &[u8]) -> Result<Identifier, String> {
    if bytes.len() > MAX_IDENTIFIER {
        return Err(format!("a C-FIND identifier of {} bytes, more than {MAX_IDENTIFIER}", bytes.len()));
    }
    let mut walk = storage::header::HeaderSniffer::with_max_depth(ts_uid, MAX_IDENTIFIER, 4).map_err(|e| e.to_string())?;
    walk.feed(bytes).map_err(|e| format!("unreadable C-FIND identifier: {e}"))?;
    let header = walk.finish().map_err(|e| format!("unreadable C-FIND identifier: {e}"))?;
    // the walk cut Specific Character Set out and kept its terms: text is decoded with them
    let obj = InMemDicomObject::read_dataset_with_ts(&header.bytes[..], header.parse_ts).map_err(|e| format!("unreadable C-FIND identifier: {e}"))?;
    Ok(Identifier { obj, charset_terms: header.charset_terms })
}

fn first_item(o: &InMemDicomObject, tag: Tag) -> Option<InMemDicomObject> {
    o.element_opt(tag).ok().flatten().and_then(|e| e.items().and_then(|i| i.first().cloned()))
}

/// The matching keys of a worklist query.
pub fn query_of(identifier: &Identifier) -> MwlQuery {
    let sps = first_item(&identifier.obj, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).unwrap_or_else(InMemDicomObject::new_empty);
    MwlQuery {
        scheduled_date: text(&sps, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
        modality: text(&sps, tags::MODALITY),
        station_ae: text(&sps, tags::SCHEDULED_STATION_AE_TITLE),
        patient_id: identifier.text(tags::PATIENT_ID),
        patient_name: identifier.text(tags::PATIENT_NAME),
        accession_number: identifier.text(tags::ACCESSION_NUMBER),
    }
}

fn put_str(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

/// The character set of the answers: the one the modality asked in when readhub can write
/// the values in it, else UTF-8 (ISO_IR 192) when a value needs more than ASCII.
pub fn answer_charset(identifier: &Identifier, entries: &[MwlEntry]) -> Option<String> {
    let asked = identifier.charset_terms.join("\\");
    let needs = entries.iter().any(|e| {
        [&e.patient_name, &e.requested_procedure_description, &e.requesting_physician, &e.requesting_service, &e.clinical_history, &e.reason]
            .iter()
            .any(|v| !v.is_ascii())
    });
    match asked.to_ascii_uppercase().as_str() {
        "GB18030" | "GBK" | "ISO_IR 192" => Some(asked),
        _ if needs => Some("ISO_IR 192".into()),
        "" => None,
        _ => Some(asked),
    }
}

/// One answer: the entry's values for the keys the modality asked for (top level and in
/// the Scheduled Procedure Step Sequence).
pub fn answer(identifier: &Identifier, e: &MwlEntry, charset: Option<&str>) -> InMemDicomObject {
    let identifier = &identifier.obj;
    let mut full = InMemDicomObject::new_empty();
    put_str(&mut full, tags::PATIENT_NAME, VR::PN, &e.patient_name);
    put_str(&mut full, tags::PATIENT_ID, VR::LO, &e.patient_id);
    put_str(&mut full, tags::ISSUER_OF_PATIENT_ID, VR::LO, &e.issuer_of_patient_id);
    put_str(&mut full, tags::PATIENT_BIRTH_DATE, VR::DA, &e.birth_date);
    put_str(&mut full, tags::PATIENT_SEX, VR::CS, &e.sex);
    put_str(&mut full, tags::ACCESSION_NUMBER, VR::SH, &e.accession_number);
    put_str(&mut full, tags::STUDY_INSTANCE_UID, VR::UI, &e.study_uid);
    put_str(&mut full, tags::REQUESTED_PROCEDURE_ID, VR::SH, &e.requested_procedure_id);
    put_str(&mut full, tags::REQUESTED_PROCEDURE_DESCRIPTION, VR::LO, &e.requested_procedure_description);
    put_str(&mut full, tags::REQUESTED_PROCEDURE_PRIORITY, VR::SH, &e.priority);
    put_str(&mut full, tags::REQUESTING_PHYSICIAN, VR::PN, &e.requesting_physician);
    put_str(&mut full, tags::REFERRING_PHYSICIAN_NAME, VR::PN, &e.requesting_physician);
    put_str(&mut full, tags::REQUESTING_SERVICE, VR::LO, &e.requesting_service);
    put_str(&mut full, tags::ADDITIONAL_PATIENT_HISTORY, VR::LT, &e.clinical_history);
    put_str(&mut full, tags::REASON_FOR_THE_REQUESTED_PROCEDURE, VR::LO, &e.reason);
    let mut sps = InMemDicomObject::new_empty();
    put_str(&mut sps, tags::MODALITY, VR::CS, &e.modality);
    put_str(&mut sps, tags::SCHEDULED_STATION_AE_TITLE, VR::AE, &e.station_ae);
    put_str(&mut sps, tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, &e.start_date);
    put_str(&mut sps, tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, &e.start_time);
    put_str(&mut sps, tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, &e.step_id);
    put_str(&mut sps, tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION, VR::LO, &e.requested_procedure_description);
    put_str(&mut sps, tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME, VR::PN, "");
    if !e.procedure_code.is_empty() {
        let mut code = InMemDicomObject::new_empty();
        put_str(&mut code, tags::CODE_VALUE, VR::SH, &e.procedure_code);
        put_str(&mut code, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "L");
        put_str(&mut code, tags::CODE_MEANING, VR::LO, &e.requested_procedure_description);
        full.put(DataElement::new(tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![code])));
    }

    let mut out = InMemDicomObject::new_empty();
    if let Some(cs) = charset {
        put_str(&mut out, tags::SPECIFIC_CHARACTER_SET, VR::CS, cs);
    }
    for el in identifier.iter() {
        let tag = el.header().tag;
        if tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        if tag == tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE {
            // the sequence with the keys asked for inside it (all, when asked empty)
            let asked = first_item(identifier, tag);
            let mut item = InMemDicomObject::new_empty();
            match asked.filter(|a| a.iter().next().is_some()) {
                Some(a) => {
                    for k in a.iter() {
                        let t = k.header().tag;
                        match sps.element_opt(t).ok().flatten() {
                            Some(v) => item.put(v.clone()),
                            None => item.put(DataElement::new(t, k.vr(), PrimitiveValue::Empty)),
                        };
                    }
                }
                None => {
                    for v in sps.iter() {
                        item.put(v.clone());
                    }
                }
            }
            out.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(vec![item])));
            continue;
        }
        match full.element_opt(tag).ok().flatten() {
            Some(v) => out.put(v.clone()),
            // a key readhub has no value for: returned empty (PS3.4 C.2.2.1.2)
            None => out.put(DataElement::new(tag, el.vr(), PrimitiveValue::Empty)),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_keys_asked() {
        let mut q = InMemDicomObject::new_empty();
        put_str(&mut q, tags::PATIENT_NAME, VR::PN, &storage::charset::latin1("张*".as_bytes()));
        put_str(&mut q, tags::ACCESSION_NUMBER, VR::SH, "");
        put_str(&mut q, tags::PATIENT_ADDRESS, VR::LO, "");
        let mut sps = InMemDicomObject::new_empty();
        put_str(&mut sps, tags::MODALITY, VR::CS, "DX");
        put_str(&mut sps, tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, "20261202");
        q.put(DataElement::new(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, VR::SQ, DataSetSequence::from(vec![sps])));
        let q = Identifier { obj: q, charset_terms: vec!["ISO_IR 192".into()] };
        let query = query_of(&q);
        assert_eq!((query.modality.as_str(), query.scheduled_date.as_str(), query.patient_name.as_str()), ("DX", "20261202", "张*"));
        let e = MwlEntry { patient_name: "Zhang^San=张^三".into(), accession_number: "A1".into(), modality: "DX".into(), start_date: "20261202".into(), ..Default::default() };
        let cs = answer_charset(&q, std::slice::from_ref(&e));
        assert_eq!(cs.as_deref(), Some("ISO_IR 192"));
        let none = Identifier { obj: q.obj.clone(), charset_terms: vec![] };
        assert_eq!(answer_charset(&none, std::slice::from_ref(&e)).as_deref(), Some("ISO_IR 192"), "UTF-8 when a value needs it");
        let a = answer(&q, &e, cs.as_deref());
        assert_eq!(text(&a, tags::PATIENT_NAME), "Zhang^San=张^三");
        assert_eq!(text(&a, tags::ACCESSION_NUMBER), "A1");
        assert!(a.element_opt(tags::PATIENT_ADDRESS).unwrap().is_some());
        assert!(a.element_opt(tags::PATIENT_ID).unwrap().is_none());
        let item = first_item(&a, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).unwrap();
        assert_eq!(text(&item, tags::MODALITY), "DX");
        assert!(item.element_opt(tags::SCHEDULED_STATION_AE_TITLE).unwrap().is_none());
    }
}
