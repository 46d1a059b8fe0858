//! A minimal C-STORE SCU over dicom-ul's client, sending exact data set bytes: the oracle
//! for byte-identity, and the way to send what DCMTK refuses to send (truncated files,
//! garbage, stalls, aborts).

use std::net::TcpStream;
use std::time::Duration;

use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};

pub struct Scu {
    assoc: ClientAssociation<TcpStream>,
    message_id: u16,
}

/// The outcome of one C-STORE.
#[derive(Debug, Clone)]
pub struct StoreResult {
    pub status: u16,
    pub comment: Option<String>,
}

pub fn connect(port: u16, calling: &str, contexts: &[(&str, &[&str])]) -> Result<Scu, String> {
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title("READHUB")
        .read_timeout(Duration::from_secs(30));
    for (a, ts) in contexts {
        opts = opts.with_presentation_context(a.to_string(), ts.iter().map(|t| t.to_string()).collect());
    }
    let assoc = opts.establish(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    Ok(Scu { assoc, message_id: 0 })
}

impl Scu {
    /// Accepted presentation context for an abstract syntax: (id, transfer syntax).
    pub fn context(&self, abstract_syntax: &str) -> Option<(u8, String)> {
        self.assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.abstract_syntax == abstract_syntax && pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.id, pc.transfer_syntax.clone()))
    }

    fn command(&mut self, sop_class: &str, sop_instance: &str) -> Vec<u8> {
        self.message_id += 1;
        let obj = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, sop_class)),
            DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x0001])),
            DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [self.message_id])),
            DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
            DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
            DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, sop_instance)),
        ]);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).unwrap();
        out
    }

    /// Send the command and the first `send` bytes of `data` (all of it, and the last
    /// fragment flag, when `finish` is true).
    pub fn send_store(&mut self, pc: u8, sop_class: &str, sop_instance: &str, data: &[u8], finish: bool) -> Result<(), String> {
        let cmd = self.command(sop_class, sop_instance);
        self.assoc
            .send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Command, is_last: true, data: cmd }] })
            .map_err(|e| e.to_string())?;
        let chunk = 16 * 1024;
        let n = data.len().div_ceil(chunk).max(1);
        for (i, part) in data.chunks(chunk).enumerate() {
            let last = finish && i + 1 == n;
            self.assoc
                .send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Data, is_last: last, data: part.to_vec() }] })
                .map_err(|e| e.to_string())?;
        }
        if data.is_empty() && finish {
            self.assoc
                .send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Data, is_last: true, data: vec![] }] })
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Send raw command bytes as one command PDV (a fragment unless `last`).
    pub fn send_command_fragment(&mut self, pc: u8, data: Vec<u8>, last: bool) -> Result<(), String> {
        self.assoc
            .send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Command, is_last: last, data }] })
            .map_err(|e| e.to_string())
    }

    /// Wait for the C-STORE-RSP.
    pub fn read_response(&mut self) -> Result<StoreResult, String> {
        match self.assoc.receive().map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                let bytes: Vec<u8> = data.into_iter().flat_map(|p| p.data).collect();
                let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased()).map_err(|e| e.to_string())?;
                let status = obj.element(tags::STATUS).unwrap().to_int::<u16>().unwrap();
                let comment = obj.element_opt(tags::ERROR_COMMENT).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string());
                Ok(StoreResult { status, comment })
            }
            other => Err(format!("expected a response, got {other:?}")),
        }
    }

    pub fn store(&mut self, sop_class: &str, sop_instance: &str, data: &[u8]) -> Result<StoreResult, String> {
        let (pc, _) = self.context(sop_class).ok_or("no accepted presentation context")?;
        self.send_store(pc, sop_class, sop_instance, data, true)?;
        self.read_response()
    }

    pub fn release(self) {
        let _ = self.assoc.release();
    }

    pub fn abort(self) {
        let _ = self.assoc.abort();
    }

    /// Whether the peer has dropped us (a receive fails).
    pub fn receive_fails(&mut self) -> bool {
        matches!(self.assoc.receive(), Err(_) | Ok(Pdu::AbortRQ { .. }))
    }
}
