//! An [`EcgRecord`] as a DICOM 12-Lead ECG Waveform instance (PS3.3 A.34.3), or General ECG
//! (A.34.4) when it does not fit the 12-lead IOD's limits (at most 13 channels, 16 s,
//! 200–1000 Hz). The cart's integer codes go into Waveform Data as they are, with each
//! channel's sensitivity (µV per code) and baseline, so a reader gets the cart's own
//! microvolts. The device's measurements and statements go into the Waveform Annotation
//! Sequence. The original file is kept inside the instance, in a private element, so that
//! it is stored and acknowledged together with it (and never half-stored apart from it).
//!
//! The UIDs are derived from the original bytes (2.25 UUID-style), so the same file sent
//! twice is the same instance, a duplicate, not a second study.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use sha2::{Digest, Sha256};

use crate::record::{EcgRecord, MeasureKind};

/// readhub's private block for the original file.
pub const PRIVATE_CREATOR: &str = "READHUB ECG SOURCE";
pub const PRIVATE_CREATOR_TAG: Tag = Tag(0x0099, 0x0010);
/// the format's token (`hl7-aecg`, `philips-xml`, `scp-ecg`)
pub const SOURCE_FORMAT_TAG: Tag = Tag(0x0099, 0x1001);
/// the original file name, when it came with one
pub const SOURCE_NAME_TAG: Tag = Tag(0x0099, 0x1002);
/// the original's length in bytes (OB is padded to an even length)
pub const SOURCE_LENGTH_TAG: Tag = Tag(0x0099, 0x1003);
/// the original bytes
pub const SOURCE_BYTES_TAG: Tag = Tag(0x0099, 0x1010);

/// What the ingest needs besides the record.
pub struct Source<'a> {
    pub bytes: &'a [u8],
    pub file_name: Option<&'a str>,
}

/// A UID under 2.25 from a hash of the original and a salt naming the level.
fn uid(bytes: &[u8], salt: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(bytes);
    let d = h.finalize();
    let mut n = [0u8; 16];
    n.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(n))
}

fn fits_twelve_lead(r: &EcgRecord) -> bool {
    r.leads.len() <= 13 && r.seconds() <= 16.0 && (200.0..=1000.0).contains(&r.sampling_hz)
}

/// The IOD the record fits: 12-lead (PS3.3 A.34.3: ≤ 13 channels, ≤ 16 s, 200–1000 Hz,
/// 16-bit), General ECG (16-bit), or General 32-bit ECG (codes beyond 16 bits, e.g. a cart
/// that writes nanovolts).
fn sop_class(r: &EcgRecord) -> (&'static str, u16) {
    match (r.fits_16_bits(), fits_twelve_lead(r)) {
        (false, _) => (uids::GENERAL32BIT_ECG_WAVEFORM_STORAGE, 32),
        (true, true) => (uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE, 16),
        (true, false) => (uids::GENERAL_ECG_WAVEFORM_STORAGE, 16),
    }
}

/// The SCPECG code (DICOM CID 3001) of a lead label.
fn lead_code(label: &str) -> Option<&'static str> {
    Some(match label {
        "I" => "5.6.3-9-1",
        "II" => "5.6.3-9-2",
        "V1" => "5.6.3-9-3",
        "V2" => "5.6.3-9-4",
        "V3" => "5.6.3-9-5",
        "V4" => "5.6.3-9-6",
        "V5" => "5.6.3-9-7",
        "V6" => "5.6.3-9-8",
        "III" => "5.6.3-9-61",
        "aVR" => "5.6.3-9-62",
        "aVL" => "5.6.3-9-63",
        "aVF" => "5.6.3-9-64",
        _ => return None,
    })
}

fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    c.put(DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)));
    c.put(DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from(scheme)));
    c.put(DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)));
    c
}

fn seq(items: Vec<InMemDicomObject>) -> DataSetSequence<InMemDicomObject> {
    DataSetSequence::from(items)
}

/// A DS value: at most 16 characters.
fn ds(v: f64) -> String {
    let s = format!("{}", (v * 1e6).round() / 1e6);
    if s.len() <= 16 { s } else { format!("{v:.8e}").chars().take(16).collect() }
}

/// DICOM LO/PN values: at most 64 characters, no backslash (the value separator).
fn lo(s: &str) -> String {
    s.replace('\\', "/").chars().take(64).collect()
}

/// Build the Part-10 bytes (Explicit VR Little Endian, UTF-8).
pub fn to_part10(r: &EcgRecord, src: &Source<'_>) -> Result<Vec<u8>, String> {
    let (class, bits) = sop_class(r);
    let study = uid(src.bytes, "study");
    let series = uid(src.bytes, "series");
    let sop = uid(src.bytes, "instance");
    let mut o = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, v: &str| o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(tags::SOP_CLASS_UID, VR::UI, class);
    put(tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, &study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, &series);
    put(tags::MODALITY, VR::CS, "ECG");
    put(tags::PATIENT_ID, VR::LO, &lo(r.patient.id.as_deref().unwrap_or("")));
    put(tags::PATIENT_NAME, VR::PN, &lo(r.patient.name.as_deref().unwrap_or("")));
    put(tags::PATIENT_SEX, VR::CS, r.patient.sex.map_or("", |s| s.dicom()));
    put(tags::PATIENT_BIRTH_DATE, VR::DA, r.patient.birth_date.as_deref().filter(|d| d.len() == 8).unwrap_or(""));
    let when = r.acquired_at.clone().unwrap_or_default();
    let (date, time) = (when.get(..8).unwrap_or(""), when.get(8..).unwrap_or(""));
    for (d, t) in [(tags::STUDY_DATE, tags::STUDY_TIME), (tags::CONTENT_DATE, tags::CONTENT_TIME)] {
        put(d, VR::DA, date);
        put(t, VR::TM, time);
    }
    if !when.is_empty() {
        put(tags::ACQUISITION_DATE_TIME, VR::DT, &when);
    }
    put(tags::ACCESSION_NUMBER, VR::SH, &r.accession_number.as_deref().unwrap_or("").chars().take(16).collect::<String>());
    put(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put(tags::STUDY_ID, VR::SH, "");
    put(tags::STUDY_DESCRIPTION, VR::LO, &format!("{}-lead ECG ({}) / 心电图", r.leads.len(), r.format.name()));
    put(tags::SERIES_NUMBER, VR::IS, "1");
    put(tags::INSTANCE_NUMBER, VR::IS, "1");
    put(tags::MANUFACTURER, VR::LO, &lo(r.device.manufacturer.as_deref().unwrap_or("")));
    if let Some(m) = &r.device.model {
        put(tags::MANUFACTURER_MODEL_NAME, VR::LO, &lo(m));
    }
    if let Some(s) = &r.device.serial {
        put(tags::DEVICE_SERIAL_NUMBER, VR::LO, &lo(s));
    }
    if let Some(s) = &r.device.software {
        put(tags::SOFTWARE_VERSIONS, VR::LO, &lo(s));
    }
    if let Some(i) = &r.device.institution {
        put(tags::INSTITUTION_NAME, VR::LO, &lo(i));
    }
    put(tags::CONVERSION_TYPE, VR::CS, "WSD");

    // the multiplex group: all leads, interleaved
    let n = r.leads[0].codes.len();
    let mut channels = Vec::with_capacity(r.leads.len());
    for l in &r.leads {
        let mut ch = InMemDicomObject::new_empty();
        let source = match lead_code(&l.label) {
            Some(c) => code_item(c, "SCPECG", &format!("Lead {}", l.label)),
            None => code_item(&lo(&l.label).chars().take(16).collect::<String>(), "99READHUB", &format!("Lead {}", lo(&l.label))),
        };
        ch.put(DataElement::new(tags::CHANNEL_SOURCE_SEQUENCE, VR::SQ, seq(vec![source])));
        ch.put(DataElement::new(tags::CHANNEL_SENSITIVITY, VR::DS, PrimitiveValue::from(ds(l.scale_uv))));
        ch.put(DataElement::new(tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE, VR::SQ, seq(vec![code_item("uV", "UCUM", "microvolt")])));
        ch.put(DataElement::new(tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR, VR::DS, PrimitiveValue::from("1")));
        // µV = (code + baseline) × sensitivity
        ch.put(DataElement::new(tags::CHANNEL_BASELINE, VR::DS, PrimitiveValue::from(ds(l.offset_uv / l.scale_uv))));
        ch.put(DataElement::new(tags::CHANNEL_SAMPLE_SKEW, VR::DS, PrimitiveValue::from("0")));
        ch.put(DataElement::new(tags::WAVEFORM_BITS_STORED, VR::US, PrimitiveValue::from(bits)));
        if let Some(v) = r.filters.low_hz {
            ch.put(DataElement::new(tags::FILTER_LOW_FREQUENCY, VR::DS, PrimitiveValue::from(ds(v))));
        }
        if let Some(v) = r.filters.high_hz {
            ch.put(DataElement::new(tags::FILTER_HIGH_FREQUENCY, VR::DS, PrimitiveValue::from(ds(v))));
        }
        if let Some(v) = r.filters.notch_hz {
            ch.put(DataElement::new(tags::NOTCH_FILTER_FREQUENCY, VR::DS, PrimitiveValue::from(ds(v))));
        }
        channels.push(ch);
    }
    // interleaved, little endian (the transfer syntax), 16 or 32 bits a sample
    let mut data = Vec::with_capacity(n * r.leads.len() * bits as usize / 8);
    for s in 0..n {
        for l in &r.leads {
            if bits == 16 {
                data.extend_from_slice(&(l.codes[s] as i16).to_le_bytes());
            } else {
                data.extend_from_slice(&l.codes[s].to_le_bytes());
            }
        }
    }
    let mut group = InMemDicomObject::new_empty();
    group.put(DataElement::new(tags::MULTIPLEX_GROUP_TIME_OFFSET, VR::DS, PrimitiveValue::from("0")));
    group.put(DataElement::new(tags::WAVEFORM_ORIGINALITY, VR::CS, PrimitiveValue::from("ORIGINAL")));
    group.put(DataElement::new(tags::NUMBER_OF_WAVEFORM_CHANNELS, VR::US, PrimitiveValue::from(r.leads.len() as u16)));
    group.put(DataElement::new(tags::NUMBER_OF_WAVEFORM_SAMPLES, VR::UL, PrimitiveValue::from(n as u32)));
    group.put(DataElement::new(tags::SAMPLING_FREQUENCY, VR::DS, PrimitiveValue::from(ds(r.sampling_hz))));
    group.put(DataElement::new(tags::MULTIPLEX_GROUP_LABEL, VR::SH, PrimitiveValue::from("RHYTHM")));
    group.put(DataElement::new(tags::CHANNEL_DEFINITION_SEQUENCE, VR::SQ, seq(channels)));
    group.put(DataElement::new(tags::WAVEFORM_BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)));
    group.put(DataElement::new(tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, PrimitiveValue::from(if bits == 16 { "SS" } else { "SL" })));
    group.put(DataElement::new(tags::WAVEFORM_DATA, if bits == 16 { VR::OW } else { VR::OB }, PrimitiveValue::U8(data.into())));
    o.put(DataElement::new(tags::WAVEFORM_SEQUENCE, VR::SQ, seq(vec![group])));

    // the device's measurements and statements
    let mut notes = Vec::new();
    for m in &r.measurements {
        let (unit, name, loinc) = m.kind.describe();
        let mut a = InMemDicomObject::new_empty();
        let concept = match loinc {
            Some(c) => code_item(c, "LN", name),
            None => code_item(kind_token(m.kind), "99READHUB", name),
        };
        a.put(DataElement::new(tags::CONCEPT_NAME_CODE_SEQUENCE, VR::SQ, seq(vec![concept])));
        a.put(DataElement::new(tags::NUMERIC_VALUE, VR::DS, PrimitiveValue::from(ds(m.value))));
        a.put(DataElement::new(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, VR::SQ, seq(vec![code_item(unit, "UCUM", unit)])));
        a.put(DataElement::new(tags::ANNOTATION_GROUP_NUMBER, VR::US, PrimitiveValue::from(0u16)));
        notes.push(a);
    }
    for s in &r.statements {
        let mut a = InMemDicomObject::new_empty();
        a.put(DataElement::new(tags::UNFORMATTED_TEXT_VALUE, VR::ST, PrimitiveValue::from(s.replace('\\', "/").chars().take(1024).collect::<String>())));
        a.put(DataElement::new(tags::ANNOTATION_GROUP_NUMBER, VR::US, PrimitiveValue::from(0u16)));
        notes.push(a);
    }
    if !notes.is_empty() {
        o.put(DataElement::new(tags::WAVEFORM_ANNOTATION_SEQUENCE, VR::SQ, seq(notes)));
    }

    // the original, byte for byte
    o.put(DataElement::new(PRIVATE_CREATOR_TAG, VR::LO, PrimitiveValue::from(PRIVATE_CREATOR)));
    o.put(DataElement::new(SOURCE_FORMAT_TAG, VR::LO, PrimitiveValue::from(r.format.token())));
    if let Some(name) = src.file_name.filter(|n| !n.is_empty()) {
        o.put(DataElement::new(SOURCE_NAME_TAG, VR::LO, PrimitiveValue::from(lo(name))));
    }
    o.put(DataElement::new(SOURCE_LENGTH_TAG, VR::UL, PrimitiveValue::from(src.bytes.len() as u32)));
    o.put(DataElement::new(SOURCE_BYTES_TAG, VR::OB, PrimitiveValue::U8(src.bytes.to_vec().into())));

    let file = o
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(class)
                .media_storage_sop_instance_uid(&sop)
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        )
        .map_err(|e| format!("file meta: {e}"))?;
    let mut out = Vec::with_capacity(src.bytes.len() + n * r.leads.len() * 2 + 4096);
    file.write_all(&mut out).map_err(|e| format!("writing the DICOM instance: {e}"))?;
    Ok(out)
}

fn kind_token(k: MeasureKind) -> &'static str {
    match k {
        MeasureKind::HeartRate => "HR",
        MeasureKind::Rr => "RR",
        MeasureKind::Pr => "PR",
        MeasureKind::PDuration => "PDUR",
        MeasureKind::Qrs => "QRS",
        MeasureKind::Qt => "QT",
        MeasureKind::QtcBazett => "QTCB",
        MeasureKind::QtcFridericia => "QTCF",
        MeasureKind::Qtc => "QTC",
        MeasureKind::PAxis => "PAXIS",
        MeasureKind::QrsAxis => "QRSAXIS",
        MeasureKind::TAxis => "TAXIS",
    }
}

/// The original file kept in an instance made by [`to_part10`]: (format token, file name, bytes).
pub fn original(obj: &InMemDicomObject) -> Option<(String, Option<String>, Vec<u8>)> {
    let creator = obj.element_opt(PRIVATE_CREATOR_TAG).ok().flatten()?.to_str().ok()?;
    if creator.trim() != PRIVATE_CREATOR {
        return None;
    }
    let format = obj.element_opt(SOURCE_FORMAT_TAG).ok().flatten()?.to_str().ok()?.trim().to_string();
    let name = obj.element_opt(SOURCE_NAME_TAG).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string());
    let mut bytes = obj.element_opt(SOURCE_BYTES_TAG).ok().flatten()?.to_bytes().ok()?.to_vec();
    if let Some(len) = obj.element_opt(SOURCE_LENGTH_TAG).ok().flatten().and_then(|e| e.to_int::<u32>().ok()) {
        bytes.truncate(len as usize);
    }
    Some((format, name, bytes))
}
