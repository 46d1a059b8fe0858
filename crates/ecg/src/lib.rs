//! ECG as the carts send it. The formats township carts export (HL7 aECG, Philips Sierra
//! XML, SCP-ECG) are read into one [`EcgRecord`] ([`parse`] tells them apart), and
//! [`dicom::to_part10`] makes a DICOM 12-lead (or general) ECG Waveform instance of it, so
//! from there an ECG is an ECG whatever the cart. [`measure`] computes the intervals from
//! the median beat; [`criteria`] holds the critical-ECG rules (危急值).
//!
//! Every reader here is bounded: input size, XML nodes, leads, samples; nothing recurses
//! on the input's nesting.

pub mod aecg;
pub mod criteria;
pub mod dicom;
pub mod measure;
pub mod record;
pub mod scp;
pub mod sierra;
mod xml;

pub use record::{DeviceMeasurement, EcgRecord, FormatError, Lead, MeasureKind, SourceFormat};

/// The largest ECG file read (a 10 s 12-lead is 50 KB–1 MB in any of the formats).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Read an ECG file of any supported format; the format is recognised by its content.
/// `allow_experimental` lets SCP-ECG through (see [`scp`]).
pub fn parse(bytes: &[u8], allow_experimental: bool) -> Result<EcgRecord, FormatError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FormatError::TooLarge { bytes: bytes.len(), limit: MAX_FILE_BYTES });
    }
    match sniff(bytes) {
        Some(SourceFormat::Hl7Aecg) => aecg::read(bytes),
        Some(SourceFormat::PhilipsSierraXml) => sierra::read(bytes),
        Some(SourceFormat::ScpEcg) if allow_experimental => scp::read(bytes),
        Some(SourceFormat::ScpEcg) => Err(FormatError::Unsupported {
            format: SourceFormat::ScpEcg,
            reason: "SCP-ECG support is experimental and off: set ecg_scp_experimental = true to accept it / SCP-ECG 为实验功能, 未开启".into(),
        }),
        None => Err(FormatError::NotEcg(
            "not an HL7 aECG (AnnotatedECG), Philips XML (restingecgdata) or SCP-ECG file / 不是可识别的心电图文件".into(),
        )),
    }
}

/// Which format a file is, from its first bytes: the XML root element's name, or
/// SCP-ECG's section 0 ("SCPECG" at byte 16).
pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
    if bytes.len() >= 22 && &bytes[16..22] == b"SCPECG" {
        return Some(SourceFormat::ScpEcg);
    }
    let head = xml::decode_text(&bytes[..bytes.len().min(4096)]).ok()?;
    let root = xml::root_name(&head)?;
    match root.as_str() {
        "AnnotatedECG" => Some(SourceFormat::Hl7Aecg),
        "restingecgdata" => Some(SourceFormat::PhilipsSierraXml),
        _ => None,
    }
}
