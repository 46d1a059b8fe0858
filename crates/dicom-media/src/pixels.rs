//! Pixel data on the way out: frames as stored or decoded to native samples, whole
//! instances transcoded to an uncompressed syntax, and the 12-bit JPEG that
//! dicom-pixeldata cannot decode made native first.

use dicom_pixeldata::PixelDecoder;

use crate::{open_part10, MediaError};

/// The native syntax decoded frames are sent in.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// JPEG Extended (Process 2 & 4) with 12-bit samples is beyond jpeg-decoder, dicom-pixeldata's
/// JPEG codec (STACK-FACTS §2). Such an object is turned into its native equivalent
/// (explicit VR little endian, 16-bit samples) by decoding each frame with libjpeg-turbo-rs,
/// a pure-Rust port of libjpeg-turbo with 12-bit support; every other object is returned
/// as it is. Rendering, decoded frames and transcoding then go the usual way.
pub fn native_if_jpeg12(mut obj: dicom_object::DefaultDicomObject) -> Result<dicom_object::DefaultDicomObject, MediaError> {
    use dicom_dictionary_std::tags;
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let bits = obj.element_opt(tags::BITS_ALLOCATED).ok().flatten().and_then(|e| e.to_int::<u16>().ok()).unwrap_or(8);
    if ts != "1.2.840.10008.1.2.4.51" || bits <= 8 {
        return Ok(obj);
    }
    let frames = obj
        .element_opt(tags::NUMBER_OF_FRAMES)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let bad = |why: String| MediaError::Undecodable(format!("12-bit JPEG pixel data cannot be decoded: {why}"));
    let fragments: Vec<Vec<u8>> = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| bad(e.to_string()))?
        .value()
        .fragments()
        .ok_or_else(|| bad("the pixel data is not encapsulated".into()))?
        .to_vec();
    let per_frame = if fragments.len() == frames {
        fragments
    } else if frames == 1 {
        vec![fragments.concat()]
    } else {
        return Err(bad(format!("{} fragments for {frames} frames", fragments.len())));
    };
    let mut native = Vec::new();
    for f in &per_frame {
        let img = libjpeg_turbo_rs::precision::decompress_12bit(f).map_err(|e| bad(e.to_string()))?;
        native.reserve(img.data.len() * 2);
        for s in img.data {
            native.extend_from_slice(&(s as u16).to_le_bytes());
        }
    }
    obj.put(dicom_object::mem::InMemElement::new(
        tags::PIXEL_DATA,
        dicom_core::VR::OW,
        dicom_core::PrimitiveValue::U8(native.into()),
    ));
    obj.update_meta(|m| m.set_transfer_syntax(&dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN));
    Ok(obj)
}

/// Decode a stored instance and write it again in the uncompressed syntax `ts`.
pub fn transcode(file: &[u8], ts: &str) -> Result<Vec<u8>, MediaError> {
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_pixeldata::Transcode;
    let mut obj = native_if_jpeg12(open_part10(file)?)?;
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| MediaError::OutOfRange(format!("unknown transfer syntax {ts}")))?;
    obj.transcode(target).map_err(|e| MediaError::Undecodable(format!("cannot transcode to {ts}: {e}")))?;
    let mut out = Vec::with_capacity(file.len() * 2);
    obj.write_all(&mut out).map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(out)
}

/// Frames `list` (1-based) of a stored instance, each with its transfer syntax: as stored
/// (`as_stored`, compressed frames kept as they are), else decoded to native samples.
pub fn frames(file: &[u8], list: &[u32], as_stored: bool) -> Result<Vec<(String, Vec<u8>)>, MediaError> {
    let obj = open_part10(file)?;
    let stored_ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let obj = if as_stored { obj } else { native_if_jpeg12(obj)? };
    let n_frames = obj
        .element_opt(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    if let Some(bad) = list.iter().find(|f| **f == 0 || **f > n_frames) {
        return Err(MediaError::OutOfRange(format!("frame {bad} is out of range: the instance has {n_frames} frame(s)")));
    }
    let pixels = obj.element_opt(dicom_dictionary_std::tags::PIXEL_DATA).ok().flatten().ok_or(MediaError::NoPixelData)?;
    match pixels.value() {
        dicom_core::value::Value::PixelSequence(seq) if as_stored && seq.fragments().len() == n_frames as usize || as_stored && n_frames == 1 => {
            let frags = seq.fragments();
            Ok(list
                .iter()
                .map(|f| {
                    let bytes = if frags.len() == n_frames as usize { frags[*f as usize - 1].clone() } else { frags.concat() };
                    (stored_ts.clone(), bytes)
                })
                .collect())
        }
        dicom_core::value::Value::Primitive(p) => {
            let all = p.to_bytes();
            let size = all.len() / n_frames as usize;
            Ok(list.iter().map(|f| (EXPLICIT_VR_LE.to_string(), all[(*f as usize - 1) * size..*f as usize * size].to_vec())).collect())
        }
        _ => list
            .iter()
            .map(|f| {
                let d = obj
                    .decode_pixel_data_frame(f - 1)
                    .map_err(|e| MediaError::Undecodable(format!("frame {f} cannot be decoded: {e}")))?;
                Ok((EXPLICIT_VR_LE.to_string(), d.data().to_vec()))
            })
            .collect(),
    }
}
