//! The attributes readhub indexes, read from a data set's header.

use dicom_core::value::{DataSetSequence, Value as DicomValue};
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::charset::{self, DecodePolicy};
use crate::header::SniffedHeader;

/// What the index keeps of one instance (text already decoded to UTF-8).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceAttrs {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<String>,
    pub series_description: Option<String>,
    pub body_part: Option<String>,
    pub instance_number: Option<String>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    /// the Specific Character Set as sent, for the record
    pub specific_character_set: Vec<String>,
    /// the header as DICOM JSON (UTF-8 text; a value left out as bulk data has a
    /// BulkDataURI of [`BULK_DATA`] followed by its tag)
    pub metadata_json: Option<String>,
}

/// Marks a value left out of the cached DICOM JSON as bulk data: its BulkDataURI is this
/// marker followed by the element's tag (`…7FE00010`). Where bulk data is retrieved from is
/// the HTTP layer's business: it puts its own URL in place of the marker.
pub const BULK_DATA: &str = "{{readhub:bulk}}";

/// Values longer than this (top level, binary) are given as BulkDataURIs in metadata.
const INLINE_BINARY_MAX: usize = 4096;

fn is_text_vr(vr: VR) -> bool {
    matches!(vr, VR::PN | VR::LO | VR::SH | VR::ST | VR::LT | VR::UT | VR::UC)
}

/// A copy of `obj` whose text values are decoded properly (they were read as ISO 8859-1).
fn redecode(obj: &InMemDicomObject, terms: &[String], policy: &DecodePolicy) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    for e in obj.iter() {
        let (tag, vr) = (e.tag(), e.vr());
        match e.value() {
            DicomValue::Primitive(PrimitiveValue::Strs(parts)) if is_text_vr(vr) => {
                let decoded: Vec<String> = parts
                    .iter()
                    .map(|p| charset::decode(&charset::latin1_bytes(p), terms, policy))
                    .collect();
                out.put(DataElement::new(tag, vr, PrimitiveValue::Strs(decoded.into())));
            }
            DicomValue::Sequence(seq) => {
                let items: Vec<InMemDicomObject> = seq.items().iter().map(|i| redecode(i, terms, policy)).collect();
                out.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
            }
            _ => {
                out.put(e.clone());
            }
        }
    }
    out
}

/// The header as DICOM JSON for WADO-RS metadata.
fn metadata(obj: &InMemDicomObject, header: &SniffedHeader, policy: &DecodePolicy) -> Option<String> {
    let utf8 = redecode(obj, &header.charset_terms, policy);
    let mut v = dicom_json::to_value(&utf8).ok()?;
    decimal_strings_as_numbers(&mut v);
    let map = v.as_object_mut()?;
    map.insert("00080005".into(), serde_json::json!({ "vr": "CS", "Value": ["ISO_IR 192"] }));
    for (tag, attr) in map.iter_mut() {
        let big = attr.get("InlineBinary").and_then(|b| b.as_str()).is_some_and(|b| b.len() > INLINE_BINARY_MAX * 4 / 3);
        if big {
            let vr = attr.get("vr").cloned().unwrap_or(serde_json::Value::String("UN".into()));
            *attr = serde_json::json!({ "vr": vr, "BulkDataURI": format!("{BULK_DATA}{tag}") });
        }
    }
    if header.bulk_tag == Some(tags::PIXEL_DATA) {
        let vr = if header.parse_ts.is_encapsulated_pixel_data() { "OB" } else { "OW" };
        map.insert(
            "7FE00010".into(),
            serde_json::json!({ "vr": vr, "BulkDataURI": format!("{BULK_DATA}7FE00010") }),
        );
    }
    serde_json::to_string(&v).ok()
}

/// DICOM JSON carries DS and IS values as JSON numbers (PS3.18 F.2.3); dicom-json keeps the
/// text it parsed. Convert them, in nested sequences too; a value that is not a number
/// (malformed, or empty) becomes null rather than a string a strict client would refuse.
fn decimal_strings_as_numbers(v: &mut serde_json::Value) {
    let Some(map) = v.as_object_mut() else { return };
    for attr in map.values_mut() {
        let vr = attr.get("vr").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let Some(values) = attr.get_mut("Value").and_then(|v| v.as_array_mut()) else { continue };
        match vr.as_str() {
            "DS" | "IS" => {
                for value in values.iter_mut() {
                    if let Some(text) = value.as_str() {
                        let text = text.trim();
                        *value = if vr == "IS" {
                            text.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
                        } else {
                            text.parse::<f64>()
                                .ok()
                                .and_then(serde_json::Number::from_f64)
                                .map(serde_json::Value::Number)
                                .unwrap_or(serde_json::Value::Null)
                        };
                    }
                }
            }
            "SQ" => values.iter_mut().for_each(decimal_strings_as_numbers),
            _ => {}
        }
    }
}

/// Why the attributes could not be taken from a data set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttrError {
    #[error("the data set could not be parsed: {0}")]
    Parse(String),
    #[error("required attribute {name} {tag} is missing or empty")]
    Missing { name: &'static str, tag: Tag },
    #[error("{name} {value:?} is not a valid UID (digits and dots, at most 64 characters)")]
    InvalidUid { name: &'static str, value: String },
    // both lengths first: a C-STORE Error Comment keeps only 64 characters
    #[error(
        "Pixel Data holds {found} bytes, the image needs {expected} (Rows x Columns x Samples per Pixel x Bits \
         Allocated x Number of Frames): the film is cut short or damaged; send it again from the original"
    )]
    PixelDataLength { expected: u64, found: u64 },
    #[error("encapsulated Pixel Data has {fragments} fragments for {frames} frames: frames are missing; send the film again from the original")]
    MissingFrames { fragments: u64, frames: u64 },
    #[error("{entries} Basic Offset Table entries for {frames} frames (one per frame is needed): the film is damaged; send it again from the original")]
    OffsetTableEntries { entries: usize, frames: u64 },
}

/// Native (uncompressed) Pixel Data must hold exactly what the image geometry needs (plus
/// one padding byte to an even length): a shorter one is a truncated film, which must not
/// be acknowledged as if it were whole.
fn check_pixel_data(obj: &InMemDicomObject, header: &SniffedHeader) -> Result<(), AttrError> {
    if header.bulk_tag != Some(tags::PIXEL_DATA) {
        return Ok(());
    }
    let int = |tag: Tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u64>().ok());
    let Some(found) = header.bulk_len else {
        // encapsulated: every frame needs at least one fragment of its own (PS3.5 A.4)
        let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
        if header.bulk_fragments < frames {
            return Err(AttrError::MissingFrames { fragments: header.bulk_fragments, frames });
        }
        // the walk checked every entry points at a fragment; an empty table is allowed
        let entries = header.offset_table_entries;
        if entries != 0 && entries as u64 != frames {
            return Err(AttrError::OffsetTableEntries { entries, frames });
        }
        return Ok(());
    };
    let (Some(rows), Some(columns), Some(bits)) = (int(tags::ROWS), int(tags::COLUMNS), int(tags::BITS_ALLOCATED)) else {
        return Ok(()); // not an image geometry we can check
    };
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1);
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let photometric = obj
        .element_opt(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    // 4:2:2 chroma subsampling stores two samples per pixel, not three (PS3.3 C.7.6.3.1.2)
    let samples = if photometric.ends_with("_422") { 2 } else { samples };
    let Some(bits_total) = rows.checked_mul(columns).and_then(|n| n.checked_mul(samples)).and_then(|n| n.checked_mul(bits)).and_then(|n| n.checked_mul(frames)) else {
        return Err(AttrError::PixelDataLength { expected: u64::MAX, found });
    };
    let expected = bits_total.div_ceil(8);
    if found == expected || (found == expected + 1 && expected % 2 == 1) {
        Ok(())
    } else {
        Err(AttrError::PixelDataLength { expected, found })
    }
}

pub use readhub_types::is_valid_uid;

/// Parse the header and pull out the indexed attributes, decoding text per the site policy.
pub fn extract(header: &SniffedHeader, policy: &DecodePolicy) -> Result<InstanceAttrs, AttrError> {
    let obj = InMemDicomObject::read_dataset_with_ts(&header.bytes[..], header.parse_ts)
        .map_err(|e| AttrError::Parse(e.to_string()))?;
    check_pixel_data(&obj, header)?;
    let terms = &header.charset_terms;
    // Every text value was decoded by dicom-rs as ISO 8859-1 (the Specific Character Set
    // element was cut out), so its chars are the original bytes: decode them properly here.
    let text = |tag: Tag| -> Option<String> {
        let e = obj.element_opt(tag).ok().flatten()?;
        let raw = match e.value().primitive()? {
            PrimitiveValue::Strs(parts) => {
                let joined = parts.join("\\");
                charset::latin1_bytes(&joined)
            }
            PrimitiveValue::Str(s) => charset::latin1_bytes(s),
            other => return Some(other.to_str().trim().to_string()).filter(|s| !s.is_empty()),
        };
        let s = charset::decode(&raw, terms, policy);
        (!s.is_empty()).then_some(s)
    };
    let uid = |tag: Tag, name: &'static str| -> Result<String, AttrError> {
        let v = text(tag).map(|s| s.trim_end_matches('\0').trim().to_string());
        match v {
            None => Err(AttrError::Missing { name, tag }),
            Some(v) if !is_valid_uid(&v) => Err(AttrError::InvalidUid { name, value: v }),
            Some(v) => Ok(v),
        }
    };
    // PN: drop empty trailing components and groups ("OB^^^^" is "OB", "^^^^" is nothing)
    let person = |tag: Tag| -> Option<String> {
        let v = text(tag)?;
        let groups: Vec<String> = v.split('=').map(|g| g.trim_end_matches(['^', ' ']).to_string()).collect();
        let keep = groups.iter().rposition(|g| !g.is_empty())? + 1;
        Some(groups[..keep].join("="))
    };
    let int = |tag: Tag| -> Option<i64> {
        let e = obj.element_opt(tag).ok().flatten()?;
        e.to_int::<i64>().ok()
    };
    Ok(InstanceAttrs {
        sop_class_uid: uid(tags::SOP_CLASS_UID, "SOP Class UID")?,
        sop_instance_uid: uid(tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
        study_uid: uid(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
        series_uid: uid(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        patient_id: text(tags::PATIENT_ID).unwrap_or_default(),
        issuer_of_patient_id: text(tags::ISSUER_OF_PATIENT_ID),
        patient_name: person(tags::PATIENT_NAME),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
        patient_sex: text(tags::PATIENT_SEX),
        study_date: text(tags::STUDY_DATE),
        study_time: text(tags::STUDY_TIME),
        accession_number: text(tags::ACCESSION_NUMBER),
        study_id: text(tags::STUDY_ID),
        study_description: text(tags::STUDY_DESCRIPTION),
        referring_physician: person(tags::REFERRING_PHYSICIAN_NAME),
        modality: text(tags::MODALITY),
        series_number: text(tags::SERIES_NUMBER),
        series_description: text(tags::SERIES_DESCRIPTION),
        body_part: text(tags::BODY_PART_EXAMINED),
        instance_number: text(tags::INSTANCE_NUMBER),
        rows: int(tags::ROWS),
        columns: int(tags::COLUMNS),
        number_of_frames: int(tags::NUMBER_OF_FRAMES),
        specific_character_set: terms.clone(),
        metadata_json: metadata(&obj, header, policy),
    })
}
