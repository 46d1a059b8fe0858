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

/// JPEG-LS lossless (PS3.5 A.4.3): what the web viewer asks frames in, to bring the full
/// 16-bit samples over a township line in a third of the bytes, decoded in the browser by
/// CharLS compiled to WebAssembly (the codec cornerstone/OHIF use).
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";

/// Frames `list` (1-based) of a stored instance in JPEG-LS lossless, one codestream each;
/// None when the image cannot travel that way sample for sample (colour, signed samples,
/// more than 16 bits), and the caller sends native samples instead. A frame stored in
/// JPEG-LS lossless is sent as stored.
pub fn jpegls_frames(file: &[u8], list: &[u32]) -> Result<Option<Vec<Vec<u8>>>, MediaError> {
    use dicom_dictionary_std::tags;
    use dicom_pixeldata::Transcode;
    let mut obj = native_if_jpeg12(open_part10(file)?)?;
    let int = |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u32>().ok());
    let text = |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string());
    let monochrome = text(tags::PHOTOMETRIC_INTERPRETATION).is_some_and(|p| p.starts_with("MONOCHROME"));
    let fits = monochrome
        && int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) == 1
        && int(tags::PIXEL_REPRESENTATION).unwrap_or(0) == 0
        && matches!(int(tags::BITS_ALLOCATED), Some(8 | 16))
        && int(tags::BITS_STORED).is_some_and(|b| (2..=16).contains(&b));
    if !fits {
        return Ok(None);
    }
    let n_frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if let Some(bad) = list.iter().find(|f| **f == 0 || **f > n_frames) {
        return Err(MediaError::OutOfRange(format!("frame {bad} is out of range: the instance has {n_frames} frame(s)")));
    }
    if obj.meta().transfer_syntax().trim_end_matches('\0') != JPEG_LS_LOSSLESS {
        obj.transcode(&dicom_transfer_syntax_registry::entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased())
            .map_err(|e| MediaError::Encode(format!("cannot compress the frames as JPEG-LS: {e}")))?;
    }
    let fragments = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| MediaError::NoPixelData)?
        .value()
        .fragments()
        .ok_or_else(|| MediaError::Encode("JPEG-LS pixel data is not encapsulated".into()))?
        .to_vec();
    let per_frame = if fragments.len() == n_frames as usize {
        fragments
    } else if n_frames == 1 {
        vec![fragments.concat()]
    } else {
        return Ok(None);
    };
    Ok(Some(list.iter().map(|f| per_frame[*f as usize - 1].clone()).collect()))
}

#[cfg(test)]
mod jpegls_tests {
    use super::*;

    fn sample(path: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(path)).unwrap()
    }

    /// The JPEG-LS frame decodes (with dicom-pixeldata's CharLS) to exactly the native samples.
    #[test]
    fn jpegls_frames_are_lossless() {
        let file = sample("pydicom-data/RG1_UNCR.dcm");
        let jls = jpegls_frames(&file, &[1]).unwrap().expect("a 16-bit unsigned film travels as JPEG-LS");
        assert_eq!(&jls[0][..2], &[0xFF, 0xD8], "a JPEG-LS codestream");
        let native = frames(&file, &[1], false).unwrap().remove(0).1;
        assert!(jls[0].len() < native.len() * 3 / 4, "{} of {} bytes (a noisy 15-bit CR)", jls[0].len(), native.len());
        // decode it back through a file in JPEG-LS
        let mut obj = open_part10(&file).unwrap();
        obj.put(dicom_object::mem::InMemElement::new(
            dicom_dictionary_std::tags::PIXEL_DATA,
            dicom_core::VR::OB,
            dicom_core::value::Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new_fragments(vec![jls[0].clone()])),
        ));
        obj.update_meta(|m| m.set_transfer_syntax(&dicom_transfer_syntax_registry::entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION));
        let back = obj.decode_pixel_data().unwrap();
        assert!(back.data() == &native[..], "lossless");
        // signed CT samples stay native
        assert!(jpegls_frames(&sample("pydicom/test_files/CT_small.dcm"), &[1]).unwrap().is_none());
    }
}
