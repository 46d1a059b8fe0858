//! C-MOVE and C-GET (PS3.4 C.4.2, C.4.3): the stored instances sent as C-STORE
//! sub-operations, as stored (byte for byte, in their transfer syntax): C-MOVE on a new
//! association to a configured destination, C-GET on the requesting association itself (the
//! SCU negotiated the storage SOP classes in the SCP role). One instance is in memory at a
//! time. The final response counts what was completed, failed and warned (PS3.7 C.4.2.1.6).

use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_ul::pdu::PDataValueType;
use dicom_ul::{ClientAssociationOptions, Pdu};
use storage::query::InstanceRow;
use storage::Storage;

use crate::dimse::{self, pad_uid, Command, Status};

pub const C_GET_RQ: u16 = 0x0010;
pub const C_GET_RSP: u16 = 0x8010;
pub const C_MOVE_RQ: u16 = 0x0021;
pub const C_MOVE_RSP: u16 = 0x8021;

/// Refused: Move Destination unknown (PS3.4 C.4.2.1.5).
pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// Warning: sub-operations complete, one or more failures.
pub const SUB_OPERATIONS_WITH_FAILURES: u16 = 0xB000;
/// Refused: out of resources, unable to perform sub-operations.
pub const UNABLE_TO_PERFORM_SUB_OPERATIONS: u16 = 0xA702;
/// Identifier does not match SOP class / unable to process.
pub const UNABLE_TO_PROCESS: u16 = 0xC000;

/// Sub-operation counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// A C-MOVE-RSP or C-GET-RSP with its counts.
pub fn retrieve_response(field: u16, rq: &Command, status: u16, c: Counts, comment: Option<&str>) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(&rq.sop_class_uid))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [field])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [rq.message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0101])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
        DataElement::new(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, VR::US, dicom_value!(U16, [c.completed])),
        DataElement::new(tags::NUMBER_OF_FAILED_SUBOPERATIONS, VR::US, dicom_value!(U16, [c.failed])),
        DataElement::new(tags::NUMBER_OF_WARNING_SUBOPERATIONS, VR::US, dicom_value!(U16, [c.warning])),
    ];
    if status == 0xFF00 {
        elements.push(DataElement::new(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, VR::US, dicom_value!(U16, [c.remaining])));
    }
    if let Some(comment) = comment {
        let ascii: String = comment.chars().filter(|c| c.is_ascii() && *c != '\\').take(64).collect();
        elements.push(DataElement::new(tags::ERROR_COMMENT, VR::LO, dicom_value!(Str, ascii)));
    }
    dimse::encode_command(elements)
}

impl Counts {
    /// Count a sub-operation's C-STORE status: success, warning (0xBxxx) or failure.
    pub fn add(&mut self, status: u16) {
        match status {
            0x0000 => self.completed += 1,
            s if s & 0xF000 == 0xB000 => self.warning += 1,
            _ => self.failed += 1,
        }
    }
}

/// The final status of a retrieve from its counts.
pub fn final_status(c: Counts) -> u16 {
    if c.failed == 0 && c.warning == 0 {
        Status::Success as u16
    } else {
        SUB_OPERATIONS_WITH_FAILURES
    }
}

/// The data set of a stored Part-10 file (what follows the file meta group), as stored.
pub fn data_set_of(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < 144 || &file[128..132] != b"DICM" {
        return Err("the stored file is not DICOM Part 10".into());
    }
    // (0002,0000) File Meta Information Group Length, explicit VR UL, first after DICM
    let head = &file[132..144];
    if head[..4] != [0x02, 0x00, 0x00, 0x00] || &head[4..6] != b"UL" {
        return Err("the stored file's meta group has no group length".into());
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    file.get(144 + len..).ok_or_else(|| "the stored file ends inside its meta group".into())
}

/// One C-STORE sub-operation's messages (command, then the data set cut to the peer's PDU).
pub fn store_messages(pc_id: u8, message_id: u16, inst: &InstanceRow, data: &[u8], peer_max_pdu: u32, move_origin: Option<(&str, u16)>) -> Vec<Pdu> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(&inst.sop_class_uid))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [dimse::C_STORE_RQ])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, pad_uid(&inst.sop_instance_uid))),
    ];
    if let Some((ae, id)) = move_origin {
        elements.push(DataElement::new(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, VR::AE, dicom_value!(Str, ae.to_string())));
        elements.push(DataElement::new(tags::MOVE_ORIGINATOR_MESSAGE_ID, VR::US, dicom_value!(U16, [id])));
    }
    dimse::message_pdus(pc_id, dimse::encode_command(elements), Some(data), peer_max_pdu)
}

/// The uncompressed syntaxes one instance can be re-encoded between without touching its
/// pixel data.
const NATIVE: [&str; 3] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"];

/// The context an instance goes on: one of its SOP class in its stored syntax, else (for an
/// uncompressed instance) one in another uncompressed syntax it is re-encoded to.
pub fn context_for<'a>(accepted: &'a [(u8, String, String)], inst: &InstanceRow) -> Option<&'a (u8, String, String)> {
    let of_class = || accepted.iter().filter(|(_, a, _)| *a == inst.sop_class_uid);
    of_class()
        .find(|(_, _, t)| *t == inst.transfer_syntax_uid)
        .or_else(|| NATIVE.contains(&inst.transfer_syntax_uid.as_str()).then(|| of_class().find(|(_, _, t)| NATIVE.contains(&t.as_str()))).flatten())
}

/// The data set in the context's syntax: as stored, or re-encoded between uncompressed ones.
pub fn in_syntax<'a>(data: &'a [u8], stored: &str, wanted: &str) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    if stored == wanted {
        return Ok(std::borrow::Cow::Borrowed(data));
    }
    let (Some(from), Some(to)) = (TransferSyntaxRegistry.get(stored), TransferSyntaxRegistry.get(wanted)) else {
        return Err(format!("transfer syntax {stored} or {wanted} is not known"));
    };
    let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(data, from).map_err(|e| format!("the stored instance cannot be read: {e}"))?;
    let mut out = Vec::with_capacity(data.len() + 1024);
    obj.write_dataset_with_ts(&mut out, to).map_err(|e| format!("the instance cannot be written in {wanted}: {e}"))?;
    Ok(std::borrow::Cow::Owned(out))
}

/// The stored bytes of an instance.
pub async fn stored_bytes(storage: &Storage, inst: &InstanceRow) -> Result<bytes::Bytes, String> {
    storage.blobs.get_bytes(&inst.blob_key).await.map_err(|e| format!("instance {} cannot be read: {e}", inst.sop_instance_uid))
}

/// C-MOVE: the instances to `dest` on a new association, as readhub (`our_ae`). Counts of
/// what the destination took.
pub async fn move_to(storage: &Storage, our_ae: &str, dest_ae: &str, host: &str, port: u16, origin: (&str, u16), found: &[InstanceRow], timeout: std::time::Duration) -> Result<Counts, String> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(our_ae.to_string())
        .called_ae_title(dest_ae.to_string())
        .read_timeout(timeout)
        .write_timeout(timeout);
    // one context per (SOP class, stored transfer syntax): sent as stored
    let mut pairs: Vec<(String, String)> = found.iter().map(|i| (i.sop_class_uid.clone(), i.transfer_syntax_uid.clone())).collect();
    pairs.sort();
    pairs.dedup();
    if pairs.len() > 128 {
        return Err(format!("{} kinds of instance in one move: more than one association's 128 presentation contexts", pairs.len()));
    }
    for (class, ts) in &pairs {
        let mut offer = vec![ts.clone()];
        if NATIVE.contains(&ts.as_str()) {
            offer.extend(NATIVE.iter().filter(|t| *t != ts).map(|t| t.to_string()));
        }
        options = options.with_presentation_context(class.clone(), offer);
    }
    let mut assoc = options
        .establish_async((host, port))
        .await
        .map_err(|e| format!("association with move destination {dest_ae}@{host}:{port} failed: {e}"))?;
    let accepted: Vec<(u8, String, String)> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .map(|pc| (pc.id, pc.abstract_syntax.clone(), pc.transfer_syntax.clone()))
        .collect();
    let max = {
        use dicom_ul::association::Association;
        assoc.peer_max_pdu_length()
    };
    let mut c = Counts { remaining: found.len().min(u16::MAX as usize) as u16, ..Default::default() };
    for (k, inst) in found.iter().enumerate() {
        c.remaining = c.remaining.saturating_sub(1);
        let Some((pc, _, ts)) = context_for(&accepted, inst) else {
            c.failed += 1;
            continue;
        };
        let file = match stored_bytes(storage, inst).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "C-MOVE sub-operation failed");
                c.failed += 1;
                continue;
            }
        };
        let data = match data_set_of(&file).and_then(|d| in_syntax(d, &inst.transfer_syntax_uid, ts)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "C-MOVE sub-operation failed");
                c.failed += 1;
                continue;
            }
        };
        for p in store_messages(*pc, (k + 1) as u16, inst, &data, max, Some(origin)) {
            assoc.send(&p).await.map_err(|e| format!("sending to {dest_ae}: {e}"))?;
        }
        let status = loop {
            match assoc.receive().await.map_err(|e| format!("no C-STORE response from {dest_ae}: {e}"))? {
                Pdu::PData { data } => {
                    if let Some(v) = data.iter().find(|v| v.value_type == PDataValueType::Command && v.is_last) {
                        break dimse::parse_command(&v.data)?.status.unwrap_or(0xFFFF);
                    }
                }
                other => return Err(format!("{dest_ae} answered {other:?} instead of a C-STORE response")),
            }
        };
        c.add(status);
    }
    let _ = assoc.release().await;
    Ok(c)
}
