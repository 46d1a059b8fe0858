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
}

/// A parsed request command.
#[derive(Debug, Clone)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub has_data_set: bool,
}

/// Parse a command set (implicit VR little endian, PS3.7 6.3). It comes from any peer that
/// got an association: walked first, so a command set with sequences nested thousands deep
/// (a command set never holds any) is refused before dicom-object recurses into it.
pub fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    let mut walk = storage::header::HeaderSniffer::with_max_depth(IMPLICIT_VR_LITTLE_ENDIAN.uid(), bytes.len(), 2)
        .map_err(|e| e.to_string())?;
    walk.feed(bytes).and_then(|()| walk.finish()).map_err(|e| format!("unreadable command set: {e}"))?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable command set: {e}"))?;
    let u16_of = |tag| -> Result<u16, String> {
        obj.element(tag)
            .map_err(|_| format!("command set lacks {tag}"))?
            .to_int::<u16>()
            .map_err(|e| format!("bad {tag}: {e}"))
    };
    let str_of = |tag| -> String {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(Command {
        field: u16_of(tags::COMMAND_FIELD)?,
        message_id: u16_of(tags::MESSAGE_ID)?,
        sop_class_uid: str_of(tags::AFFECTED_SOP_CLASS_UID),
        sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: u16_of(tags::COMMAND_DATA_SET_TYPE).unwrap_or(NO_DATA_SET) != NO_DATA_SET,
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
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("writing a command set to memory cannot fail");
    out
}

fn pad_uid(uid: &str) -> String {
    // UIDs of odd length are padded with NUL (PS3.5 9.1)
    let mut s = uid.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    s
}
