//! DIMSE command sets: parse what the SCU sends, build what we answer.

use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// C-STORE-RQ / C-ECHO-RQ command fields (PS3.7 E.1).
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Storage Commitment (PS3.7 10.3): N-ACTION from the modality, N-EVENT-REPORT from us.
pub const N_ACTION_RQ: u16 = 0x0130;
pub const N_ACTION_RSP: u16 = 0x8130;
pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
/// C-FIND (PS3.7 9.3.2) and C-CANCEL (9.3.2.3)
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_FIND_RSP: u16 = 0x8020;
pub const C_CANCEL_RQ: u16 = 0x0FFF;
const NO_DATA_SET: u16 = 0x0101;

/// DIMSE statuses we answer with (PS3.4 B.2.3, PS3.7 C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Success = 0x0000,
    /// Refused: out of resources (storage or database failure, size limit): retry later
    OutOfResources = 0xA700,
    /// Error: data set does not match SOP class
    DataSetMismatch = 0xA900,
    /// Error: cannot understand (not DICOM, truncated, required attribute missing)
    CannotUnderstand = 0xC000,
    /// Unrecognized operation
    UnrecognizedOperation = 0x0211,
    /// No such SOP class (an N-ACTION on a class we do not serve)
    NoSuchSopClass = 0x0118,
    /// Processing failure
    ProcessingFailure = 0x0110,
    /// Refused: not authorized (a workstation's AE title storing)
    NotAuthorized = 0x0124,
    /// C-FIND: a match, more may follow
    Pending = 0xFF00,
    /// C-FIND: Unable to process (the query cannot be answered now)
    UnableToProcess = 0xC001,
    /// C-FIND: Identifier does not match SOP Class
    IdentifierMismatch = 0xA900 | 0x0001,
}

/// A parsed request command.
#[derive(Debug, Clone)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub has_data_set: bool,
    /// N-ACTION: Requested SOP Class/Instance UID (0000,0003), (0000,1001), Action Type ID
    pub requested_sop_class_uid: String,
    pub requested_sop_instance_uid: String,
    pub action_type_id: Option<u16>,
    /// a response's status (an N-EVENT-REPORT-RSP from the modality)
    pub status: Option<u16>,
    /// C-MOVE: Move Destination (0000,0600)
    pub move_destination: String,
}

/// Parse a command set (implicit VR little endian, PS3.7 6.3). It comes from any peer that
/// got an association, so it is read here as what it must be: a flat list of group 0000
/// elements, each of defined length within the bytes. No general parser sees it: fuzzing
/// made dicom-object recurse 2,000 levels into one and, through a value length it reads
/// differently from a walk, allocate 3.5 GB for 85 bytes.
pub fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    let mut fields: std::collections::HashMap<u16, &[u8]> = std::collections::HashMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let head = rest.get(..8).ok_or("unreadable command set: it ends inside an element header")?;
        let (group, element) = (u16::from_le_bytes([head[0], head[1]]), u16::from_le_bytes([head[2], head[3]]));
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if group != 0x0000 {
            return Err(format!("unreadable command set: element ({group:04X},{element:04X}) is not a command element"));
        }
        let value = rest.get(8..8usize.saturating_add(len)).ok_or_else(|| {
            format!("unreadable command set: element (0000,{element:04X}) declares {len} bytes, more than the command set holds")
        })?;
        fields.insert(element, value);
        rest = &rest[8 + len..];
    }
    let u16_of = |tag: dicom_core::Tag| -> Result<u16, String> {
        match fields.get(&tag.element()) {
            Some(v) if v.len() == 2 => Ok(u16::from_le_bytes([v[0], v[1]])),
            Some(v) => Err(format!("bad {tag}: {} bytes, not 2", v.len())),
            None => Err(format!("command set lacks {tag}")),
        }
    };
    let str_of = |tag: dicom_core::Tag| -> String {
        fields
            .get(&tag.element())
            .map(|v| String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(Command {
        field: u16_of(tags::COMMAND_FIELD)?,
        // a response (from the modality, to our N-EVENT-REPORT) names the request's instead
        message_id: u16_of(tags::MESSAGE_ID).or_else(|_| u16_of(tags::MESSAGE_ID_BEING_RESPONDED_TO))?,
        sop_class_uid: str_of(tags::AFFECTED_SOP_CLASS_UID),
        sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: u16_of(tags::COMMAND_DATA_SET_TYPE).unwrap_or(NO_DATA_SET) != NO_DATA_SET,
        requested_sop_class_uid: str_of(tags::REQUESTED_SOP_CLASS_UID),
        requested_sop_instance_uid: str_of(tags::REQUESTED_SOP_INSTANCE_UID),
        action_type_id: u16_of(tags::ACTION_TYPE_ID).ok(),
        status: u16_of(tags::STATUS).ok(),
        move_destination: str_of(tags::MOVE_DESTINATION),
    })
}

/// Build a response command set (C-STORE-RSP or C-ECHO-RSP), encoded implicit VR LE.
pub fn response(
    field: u16,
    rq: &Command,
    status: Status,
    error_comment: Option<&str>,
) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(&rq.sop_class_uid))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [field])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [rq.message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [NO_DATA_SET])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status as u16])),
    ];
    if !rq.sop_instance_uid.is_empty() {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            dicom_value!(Str, pad_uid(&rq.sop_instance_uid)),
        ));
    }
    if let Some(comment) = error_comment.filter(|_| status != Status::Success) {
        // Error Comment is LO: 64 characters of the default repertoire
        let ascii: String = comment.chars().filter(|c| c.is_ascii() && *c != '\\').take(64).collect();
        elements.push(DataElement::new(tags::ERROR_COMMENT, VR::LO, dicom_value!(Str, ascii)));
    }
    encode_command(elements)
}

/// A C-STORE-RQ command set, as an SCU sends it (results back to a site's PACS).
pub fn store_request(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    encode_command(vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(sop_class))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RQ])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, pad_uid(sop_instance))),
    ])
}

/// A C-FIND-RSP: Pending with an identifier following, or the final status without one.
pub fn find_response(rq: &Command, status: Status, error_comment: Option<&str>) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(&rq.sop_class_uid))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_FIND_RSP])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [rq.message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [if status == Status::Pending { 0x0000 } else { NO_DATA_SET }])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status as u16])),
    ];
    if let Some(comment) = error_comment.filter(|_| !matches!(status, Status::Success | Status::Pending)) {
        let ascii: String = comment.chars().filter(|c| c.is_ascii() && *c != '\\').take(64).collect();
        elements.push(DataElement::new(tags::ERROR_COMMENT, VR::LO, dicom_value!(Str, ascii)));
    }
    encode_command(elements)
}

/// The N-ACTION-RSP to a Storage Commitment request (PS3.7 10.3.4).
pub fn action_response(rq: &Command, status: Status) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, pad_uid(&rq.requested_sop_class_uid))),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [N_ACTION_RSP])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [rq.message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [NO_DATA_SET])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status as u16])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, pad_uid(&rq.requested_sop_instance_uid))),
    ];
    if let Some(a) = rq.action_type_id {
        elements.push(DataElement::new(tags::ACTION_TYPE_ID, VR::US, dicom_value!(U16, [a])));
    }
    encode_command(elements)
}

/// A command set from its elements, encoded implicit VR little endian (PS3.7 6.3.1).
pub(crate) fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("writing a command set to memory cannot fail");
    out
}

/// A message as P-DATA PDUs: the command set in one, the data set cut to the peer's maximum
/// PDU length (less the PDU and PDV headers); a peer that says 0 (no limit) gets 16 KiB.
pub fn message_pdus(pc_id: u8, command: Vec<u8>, data: Option<&[u8]>, peer_max_pdu: u32) -> Vec<dicom_ul::Pdu> {
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    let mut out = vec![dicom_ul::Pdu::PData {
        data: vec![PDataValue { presentation_context_id: pc_id, value_type: PDataValueType::Command, is_last: true, data: command }],
    }];
    if let Some(data) = data {
        let chunk = match peer_max_pdu as usize {
            0 => 16 * 1024,
            m => m.saturating_sub(12).max(1024),
        };
        let n = data.len().div_ceil(chunk).max(1);
        for (k, piece) in data.chunks(chunk).enumerate() {
            out.push(dicom_ul::Pdu::PData {
                data: vec![PDataValue { presentation_context_id: pc_id, value_type: PDataValueType::Data, is_last: k + 1 == n, data: piece.to_vec() }],
            });
        }
    }
    out
}

pub(crate) fn pad_uid(uid: &str) -> String {
    // UIDs of odd length are padded with NUL (PS3.5 9.1)
    let mut s = uid.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    s
}
