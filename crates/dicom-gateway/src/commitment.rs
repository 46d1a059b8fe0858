//! Storage Commitment Push Model (PS3.4 J): a modality asks, with N-ACTION, whether readhub
//! has taken responsibility for instances it sent, so that it may delete its own copies.
//! readhub answers N-ACTION-RSP at once, then sends the result as N-EVENT-REPORT on the
//! same association: every instance the site holds in the index is committed (an instance
//! is indexed only once durable, so nothing more is needed), the others fail with the
//! standard's reason. The request's data set comes from a peer, so it is walked (bounded
//! length and nesting) before it is parsed.

use dicom_core::value::DataSetSequence;
use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_encoding::TransferSyntaxIndex;
use storage::{Site, Storage};

/// The Storage Commitment Push Model SOP Class and its well-known instance.
pub const SOP_CLASS: &str = uids::STORAGE_COMMITMENT_PUSH_MODEL;
pub const WELL_KNOWN_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

/// The most a request's data set may be: 10,000 references of about 120 bytes.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// The most references in one request.
const MAX_REFERENCES: usize = 20_000;

/// Failure Reasons (PS3.4 J.3.2.1.1.2, PS3.3 C.14).
pub const PROCESSING_FAILURE: u16 = 0x0110;
pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;

/// What the modality asks to have committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub transaction_uid: String,
    /// (SOP Class UID, SOP Instance UID)
    pub references: Vec<(String, String)>,
}

/// The answer: committed references, and failed ones with their reason; and the studies
/// of the committed ones (when nothing failed, the sender has declared them complete).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub committed: Vec<(String, String)>,
    pub studies: Vec<readhub_types::StudyPk>,
    pub failed: Vec<(String, String, u16)>,
}

fn text(o: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    o.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string()).unwrap_or_default()
}

/// Read an N-ACTION's data set, encoded in `ts_uid`.
pub fn parse_request(ts_uid: &str, bytes: &[u8]) -> Result<Request, String> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(format!("a Storage Commitment request of {} bytes, more than {MAX_REQUEST_BYTES}", bytes.len()));
    }
    let mut walk = storage::header::HeaderSniffer::with_max_depth(ts_uid, MAX_REQUEST_BYTES, 4).map_err(|e| e.to_string())?;
    walk.feed(bytes).map_err(|e| format!("unreadable Storage Commitment request: {e}"))?;
    let header = walk.finish().map_err(|e| format!("unreadable Storage Commitment request: {e}"))?;
    let obj = InMemDicomObject::read_dataset_with_ts(&header.bytes[..], header.parse_ts).map_err(|e| format!("unreadable Storage Commitment request: {e}"))?;
    let transaction_uid = text(&obj, tags::TRANSACTION_UID);
    if transaction_uid.is_empty() {
        return Err("the Storage Commitment request has no Transaction UID".into());
    }
    let items = obj
        .element_opt(tags::REFERENCED_SOP_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .ok_or("the Storage Commitment request has no Referenced SOP Sequence")?;
    if items.len() > MAX_REFERENCES {
        return Err(format!("{} references in one request, more than {MAX_REFERENCES}", items.len()));
    }
    let references = items.iter().map(|i| (text(i, tags::REFERENCED_SOP_CLASS_UID), text(i, tags::REFERENCED_SOP_INSTANCE_UID))).collect();
    Ok(Request { transaction_uid, references })
}

/// Which of the references the site's instances in the index cover.
pub async fn check(storage: &Storage, site: &Site, request: &Request) -> Outcome {
    let mut out = Outcome::default();
    let uids: Vec<String> = request.references.iter().map(|(_, i)| i.clone()).filter(|i| !i.is_empty()).collect();
    let held = match storage::query::held_by_site(&storage.db, site.id, &uids).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "storage commitment: the index cannot be read");
            out.failed = request.references.iter().map(|(c, i)| (c.clone(), i.clone(), PROCESSING_FAILURE)).collect();
            return out;
        }
    };
    for (class, instance) in &request.references {
        match held.get(instance) {
            Some((h, study)) if h == class || class.is_empty() => {
                out.committed.push((h.clone(), instance.clone()));
                if !out.studies.contains(study) {
                    out.studies.push(*study);
                }
            }
            Some(_) => out.failed.push((class.clone(), instance.clone(), CLASS_INSTANCE_CONFLICT)),
            None => out.failed.push((class.clone(), instance.clone(), NO_SUCH_OBJECT_INSTANCE)),
        }
    }
    out
}

fn reference(class: &str, instance: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(tags::REFERENCED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)));
    item.put(DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(instance)));
    item
}

/// The N-EVENT-REPORT-RQ: its command set and its data set (in `ts_uid`). Event Type 1 when
/// everything was committed, 2 when some failed.
pub fn event_report(message_id: u16, ts_uid: &str, request: &Request, outcome: &Outcome) -> Result<(Vec<u8>, Vec<u8>), String> {
    let event_type: u16 = if outcome.failed.is_empty() { 1 } else { 2 };
    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, crate::dimse::pad_uid(SOP_CLASS))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [crate::dimse::N_EVENT_REPORT_RQ])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, crate::dimse::pad_uid(WELL_KNOWN_INSTANCE))),
        DataElement::new(tags::EVENT_TYPE_ID, VR::US, dicom_value!(U16, [event_type])),
    ]);
    let mut command_bytes = Vec::with_capacity(256);
    command
        .write_dataset_with_ts(&mut command_bytes, &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| e.to_string())?;
    let mut data = InMemDicomObject::new_empty();
    data.put(DataElement::new(tags::TRANSACTION_UID, VR::UI, PrimitiveValue::from(request.transaction_uid.as_str())));
    if !outcome.committed.is_empty() {
        let items: Vec<_> = outcome.committed.iter().map(|(c, i)| reference(c, i)).collect();
        data.put(DataElement::new(tags::REFERENCED_SOP_SEQUENCE, VR::SQ, DataSetSequence::from(items)));
    }
    if !outcome.failed.is_empty() {
        let items: Vec<_> = outcome
            .failed
            .iter()
            .map(|(c, i, reason)| {
                let mut item = reference(c, i);
                item.put(DataElement::new(tags::FAILURE_REASON, VR::US, dicom_value!(U16, [*reason])));
                item
            })
            .collect();
        data.put(DataElement::new(tags::FAILED_SOP_SEQUENCE, VR::SQ, DataSetSequence::from(items)));
    }
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| format!("transfer syntax {ts_uid} is not known"))?;
    let mut data_bytes = Vec::with_capacity(256 + 120 * request.references.len());
    data.write_dataset_with_ts(&mut data_bytes, ts).map_err(|e| e.to_string())?;
    Ok((command_bytes, data_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    #[test]
    fn a_request_reads_back_and_an_answer_is_written() {
        let mut data = InMemDicomObject::new_empty();
        data.put(DataElement::new(tags::TRANSACTION_UID, VR::UI, PrimitiveValue::from("1.2.3.4")));
        data.put(DataElement::new(tags::REFERENCED_SOP_SEQUENCE, VR::SQ, DataSetSequence::from(vec![reference("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5")])));
        let mut bytes = Vec::new();
        data.write_dataset_with_ts(&mut bytes, TransferSyntaxRegistry.get(EXPLICIT_LE).unwrap()).unwrap();
        let r = parse_request(EXPLICIT_LE, &bytes).unwrap();
        assert_eq!(r, Request { transaction_uid: "1.2.3.4".into(), references: vec![("1.2.840.10008.5.1.4.1.1.7".into(), "1.2.3.4.5".into())] });
        let outcome = Outcome { committed: vec![], studies: vec![], failed: vec![("1.2.840.10008.5.1.4.1.1.7".into(), "1.2.3.4.5".into(), NO_SUCH_OBJECT_INSTANCE)] };
        let (cmd, data) = event_report(7, EXPLICIT_LE, &r, &outcome).unwrap();
        let parsed = crate::dimse::parse_command(&cmd).unwrap();
        assert_eq!(parsed.field, crate::dimse::N_EVENT_REPORT_RQ);
        let back = InMemDicomObject::read_dataset_with_ts(&data[..], TransferSyntaxRegistry.get(EXPLICIT_LE).unwrap()).unwrap();
        assert_eq!(text(&back, tags::TRANSACTION_UID), "1.2.3.4");
        let failed = back.element(tags::FAILED_SOP_SEQUENCE).unwrap().items().unwrap().to_vec();
        assert_eq!(failed[0].element(tags::FAILURE_REASON).unwrap().to_int::<u16>().unwrap(), NO_SUCH_OBJECT_INSTANCE);
    }

    #[test]
    fn hostile_requests_are_refused() {
        assert!(parse_request(EXPLICIT_LE, &[0xff; 64]).is_err());
        assert!(parse_request(EXPLICIT_LE, &vec![0; MAX_REQUEST_BYTES + 1]).unwrap_err().contains("more than"));
        let mut no_uid = InMemDicomObject::new_empty();
        no_uid.put(DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("x")));
        let mut bytes = Vec::new();
        no_uid.write_dataset_with_ts(&mut bytes, TransferSyntaxRegistry.get(EXPLICIT_LE).unwrap()).unwrap();
        assert!(parse_request(EXPLICIT_LE, &bytes).unwrap_err().contains("Transaction UID"));
    }
}
