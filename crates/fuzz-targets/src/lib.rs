//! One function per fuzz target: each feeds arbitrary bytes to a parser that reads what a
//! peer sends (a modality, a browser, a stored file), the way readhub calls it. Each must
//! return for any input (an error is an answer): a panic, an abort, unbounded memory or a
//! hang is a bug, and the input that found it goes to `fuzz/regressions/<target>/`.
//!
//! `fuzz/fuzz_targets/*.rs` run these under cargo-fuzz (`scripts/fuzz.sh`);
//! `tests/corpus.rs` replays every corpus and regression file on each `cargo test`.

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus folders name them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("pdu", pdu),
    ("command_set", command_set),
    ("header_walk", header_walk),
    ("charset", charset),
    ("stow_multipart", stow_multipart),
    ("qido_query", qido_query),
    ("frame_list", frame_list),
    ("waveform", waveform),
    ("ecg_file", ecg_file),
    ("commitment_request", commitment_request),
    ("hl7_message", hl7_message),
    ("find_identifier", find_identifier),
];

/// An HL7 v2 message as a HIS sends it over MLLP: decoded as MSH-18 says, parsed, read as an
/// order, and acknowledged, as the MLLP listener does (without the database).
pub fn hl7_message(data: &[u8]) {
    let us = hl7::Us { application: "READHUB".into(), facility: "HUB".into(), utc_offset_hours: 8 };
    match hl7::message::decode(data) {
        Ok(inbound) => {
            let outcome = match hl7::message::parse(&inbound.text) {
                Ok(msg) => hl7::orders::read_order(&msg, &inbound.header, 8).map(|o| o.order.accession_number),
                Err(nak) => Err(nak),
            };
            let _ = hl7::message::ack(&us, &inbound.header, inbound.charset, &outcome, 0);
        }
        Err(nak) => {
            let _ = hl7::message::ack(&us, &Default::default(), hl7::Charset::Utf8, &Err(nak), 0);
        }
    }
}

/// A C-FIND identifier as a modality or workstation sends it (the first byte picks the
/// transfer syntax): read, its character set applied, its worklist keys and Q/R level taken.
pub fn find_identifier(data: &[u8]) {
    let [ts, rest @ ..] = data else { return };
    let ts = SYNTAXES[usize::from(*ts) % SYNTAXES.len()];
    if let Ok(id) = dicom_gateway::mwl::parse_identifier(ts, rest) {
        let q = dicom_gateway::mwl::query_of(&id);
        let _ = dicom_gateway::qr::Level::of(&id);
        let entry = dicom_gateway::mwl::MwlEntry { patient_name: q.patient_name, ..Default::default() };
        let cs = dicom_gateway::mwl::answer_charset(&id, std::slice::from_ref(&entry));
        let _ = dicom_gateway::mwl::answer(&id, &entry, cs.as_deref());
    }
}

/// A Storage Commitment N-ACTION data set as a modality sends it; the first byte picks the
/// transfer syntax.
pub fn commitment_request(data: &[u8]) {
    let [ts, rest @ ..] = data else { return };
    let ts = SYNTAXES[usize::from(*ts) % SYNTAXES.len()];
    let _ = dicom_gateway::commitment::parse_request(ts, rest);
}

/// An ECG file as a cart or a technician sends it (HL7 aECG, Philips XML, SCP-ECG): read,
/// made DICOM, and measured, as `POST /api/ecg` does.
pub fn ecg_file(data: &[u8]) {
    if let Ok(record) = ecg::parse(data, true) {
        let _ = ecg::dicom::to_part10(&record, &ecg::dicom::Source { bytes: data, file_name: None });
        let uv: Vec<Vec<f32>> = record.leads.iter().map(|l| l.microvolts().map(|v| v as f32).collect()).collect();
        let leads: Vec<(&str, &[f32])> = record.leads.iter().zip(&uv).map(|(l, v)| (l.label.as_str(), v.as_slice())).collect();
        let _ = ecg::measure::compute(&leads, record.sampling_hz);
    }
}

/// An upper-layer PDU as it arrives on the DICOM port (dicom-ul's reader, with the
/// gateway's maximum PDU length), then, for P-DATA, its command fragment as a command set.
pub fn pdu(data: &[u8]) {
    if let Ok(Some(dicom_ul::pdu::Pdu::PData { data: values })) = dicom_ul::pdu::read_pdu(data, 256 * 1024, true) {
        for v in values {
            if v.value_type == dicom_ul::pdu::PDataValueType::Command {
                let _ = dicom_gateway::dimse::parse_command(&v.data);
            }
        }
    }
}

/// A DIMSE command set (at most 64 KiB reach the parser).
pub fn command_set(data: &[u8]) {
    let _ = dicom_gateway::dimse::parse_command(&data[..data.len().min(64 * 1024)]);
}

const SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2",      // implicit VR little endian
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2.2",    // explicit VR big endian
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
];

/// A received data set: the first byte picks the transfer syntax, the second how it is cut
/// into chunks (as P-DATA fragments or HTTP chunks would); then the header walk, and on
/// success the index's attribute extraction, as at ingest.
pub fn header_walk(data: &[u8]) {
    let [ts, chunk, rest @ ..] = data else { return };
    let ts = SYNTAXES[usize::from(*ts) % SYNTAXES.len()];
    let chunk = usize::from(*chunk).max(1) * 7;
    let Ok(mut walk) = storage::header::HeaderSniffer::with_max_depth(ts, 1 << 20, storage::header::DEFAULT_MAX_SEQUENCE_DEPTH) else {
        return;
    };
    for part in rest.chunks(chunk) {
        if walk.feed(part).is_err() {
            return;
        }
    }
    if let Ok(header) = walk.finish() {
        let _ = storage::attrs::extract(&header, &storage::charset::DecodePolicy::default());
    }
}

const TERMS: [&[&str]; 8] = [
    &[],
    &["ISO_IR 100"],
    &["ISO_IR 192"],
    &["GB18030"],
    &["GBK"],
    &["", "ISO 2022 IR 58"],
    &["ISO 2022 IR 6", "ISO 2022 IR 87"],
    &["ISO_IR 13", "ISO 2022 IR 87", "ISO 2022 IR 159"],
];

/// A text value under a declared Specific Character Set (the first byte picks the terms,
/// the second whether the site's GBK fallback applies).
pub fn charset(data: &[u8]) {
    let [terms, fallback, raw @ ..] = data else { return };
    let terms: Vec<String> = TERMS[usize::from(*terms) % TERMS.len()].iter().map(|t| t.to_string()).collect();
    let policy = storage::charset::DecodePolicy {
        fallback: (fallback % 2 == 1).then_some(storage::charset::Charset::Gbk),
    };
    let text = storage::charset::decode(raw, &terms, &policy);
    let _ = storage::charset::person_name_terms(&text);
}

/// A STOW-RS request: the Content-Type up to the first newline, then the body.
pub fn stow_multipart(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let content_type = String::from_utf8_lossy(&data[..split]);
    viewer_api::fuzzing::stow_body(&content_type, data.get(split + 1..).unwrap_or_default());
}

/// A QIDO-RS query string.
pub fn qido_query(data: &[u8]) {
    viewer_api::fuzzing::qido_query(data);
}

/// A WADO-RS frame list.
pub fn frame_list(data: &[u8]) {
    viewer_api::fuzzing::frame_list(&String::from_utf8_lossy(data));
}

/// A stored ECG waveform instance (Part-10) opened and decoded for the viewer.
pub fn waveform(data: &[u8]) {
    if let Ok(obj) = dicom_media::open_part10(data) {
        let _ = dicom_media::ecg::decode(&obj);
        let _ = dicom_media::ecg::annotations(&obj);
    }
}
