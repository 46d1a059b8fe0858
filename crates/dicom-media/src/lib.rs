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
///
/// The data set is walked first (linear, no recursion): an instance stored before the
/// nesting limit existed, or under a higher one, may nest sequences deep enough to overflow
/// dicom-object's recursive reader and end the process. Such an instance is refused here
/// with an error instead; its bytes can still be retrieved as stored.
pub fn open_part10(file: &[u8]) -> Result<DefaultDicomObject, MediaError> {
    use dicom_walk::{HeaderError, HeaderSniffer, MAX_SEQUENCE_DEPTH_LIMIT};
    let Some(data_set) = dicom_walk::part10_dataset_offset(file) else {
        return Err(MediaError::Unreadable("stored object is not a Part-10 file".into()));
    };
    // the meta reader sees only the group the walk checked
    let meta = dicom_object::meta::FileMetaTable::from_reader(&file[128..data_set])
        .map_err(|e| MediaError::Unreadable(format!("cannot read the stored instance's file meta information: {e}")))?;
    let mut walk = HeaderSniffer::with_max_depth(meta.transfer_syntax(), file.len(), MAX_SEQUENCE_DEPTH_LIMIT)
        .map_err(|e| MediaError::Undecodable(e.to_string()))?;
    // fed in pieces: the walk keeps only what it has not yet walked over, so opening a
    // 15 MB film for a frame or a render does not copy it whole once more
    let walked = file[data_set..]
        .chunks(64 * 1024)
        .try_for_each(|piece| walk.feed(piece))
        .and_then(|()| walk.finish().map(drop));
    match walked {
        Ok(()) => {}
        // a damaged offset table can declare gigabytes that dicom-object would allocate
        // (found by fuzzing: 17 GB); like too deep a nesting, it is refused with a reason
        Err(e @ (HeaderError::TooDeep { .. } | HeaderError::OffsetTable(_))) => {
            return Err(MediaError::Undecodable(format!(
                "this stored instance cannot be opened safely ({e}); its original bytes can still be retrieved as stored"
            )))
        }
        Err(e) => return Err(MediaError::Unreadable(format!("the stored instance is damaged: {e}"))),
    }
    dicom_object::from_reader(&file[128..]).map_err(|e| MediaError::Unreadable(format!("cannot read stored instance: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Part-10 file (explicit VR LE) whose data set nests `levels` sequences.
    fn nested_part10(levels: usize) -> Vec<u8> {
        let el = |tag: [u8; 4], vr: &[u8; 2], value: &[u8]| {
            let mut out = tag.to_vec();
            out.extend_from_slice(vr);
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
            out
        };
        let mut inner = el([0x08, 0x00, 0x00, 0x01], b"SH", b"T-D1100 ");
        for _ in 0..levels {
            let mut seq = vec![0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
            seq.extend(inner);
            seq.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            inner = seq;
        }
        let mut ds = el([0x08, 0x00, 0x16, 0x00], b"UI", b"1.2.840.10008.5.1.4.1.1.88.11\0");
        ds.extend(el([0x08, 0x00, 0x18, 0x00], b"UI", b"1.2.3.4\0"));
        ds.extend(inner);
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.88.11")
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax("1.2.840.10008.1.2.1")
            .build()
            .unwrap();
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta.write(&mut file).unwrap();
        file.extend(ds);
        file
    }

    #[test]
    fn deep_nesting_is_refused_before_dicom_object_recurses() {
        // in a thread with a small stack: what overflows there would end the process
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let shallow = open_part10(&nested_part10(100)).expect("100 levels open");
                assert!(shallow.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID).is_ok());
                for levels in [dicom_walk::MAX_SEQUENCE_DEPTH_LIMIT + 1, 1_300] {
                    match open_part10(&nested_part10(levels)) {
                        Err(MediaError::Undecodable(why)) => assert!(why.contains("nested more than 128"), "{why}"),
                        other => panic!("{levels} levels: {:?}", other.map(|_| ())),
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let mut file = nested_part10(2);
        file.truncate(file.len() - 10);
        assert!(matches!(open_part10(&file), Err(MediaError::Unreadable(_))));
        assert!(matches!(open_part10(b"short"), Err(MediaError::Unreadable(_))));
    }
}
