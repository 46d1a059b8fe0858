//! readhub's DICOM media work, used by DICOMweb, the viewer API and the reports alike:
//! opening a stored instance, decoding and transcoding frames ([`pixels`]), rendering
//! images ([`render`]), and ECG samples, paper and rasterisation ([`ecg`]).
//!
//! Nothing here knows HTTP: every failure is a [`MediaError`] saying what went wrong, and
//! each edge maps it to its own answer.

pub mod ecg;
pub mod escape;
pub mod pixels;
pub mod render;

use dicom_object::DefaultDicomObject;

/// What went wrong with a stored instance or a request for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// the stored object cannot be read (it was validated at ingest: a fault of the store)
    #[error("{0}")]
    Unreadable(String),
    /// the object is valid but this operation cannot decode it (unsupported syntax, broken
    /// pixel data, not a waveform)
    #[error("{0}")]
    Undecodable(String),
    /// the request asks for something the object does not have (a frame out of range, an
    /// impossible viewport)
    #[error("{0}")]
    OutOfRange(String),
    /// the object has no pixel data
    #[error("the instance has no pixel data")]
    NoPixelData,
    /// encoding the result failed
    #[error("{0}")]
    Encode(String),
}

/// Open a stored Part-10 file (preamble, DICM, file meta group, data set).
pub fn open_part10(file: &[u8]) -> Result<DefaultDicomObject, MediaError> {
    if file.len() < 132 || &file[128..132] != b"DICM" {
        return Err(MediaError::Unreadable("stored object is not a Part-10 file".into()));
    }
    dicom_object::from_reader(&file[128..]).map_err(|e| MediaError::Unreadable(format!("cannot read stored instance: {e}")))
}
