//! SCP-ECG (EN 1064 / ISO 11073-91064). Recognised by its section 0 header; reading it is
//! not implemented yet (its sections 2–6 need a Huffman reader of our own, and no
//! independent reader was found to check one against), so a file is refused with that
//! reason rather than half-read.

use crate::record::{EcgRecord, FormatError, SourceFormat};

pub fn read(_bytes: &[u8]) -> Result<EcgRecord, FormatError> {
    Err(FormatError::Unsupported {
        format: SourceFormat::ScpEcg,
        reason: "SCP-ECG files are recognised but not yet read by readhub: export HL7 aECG, Philips XML or DICOM from the cart / 暂不支持 SCP-ECG, 请导出 aECG、Philips XML 或 DICOM".into(),
    })
}
