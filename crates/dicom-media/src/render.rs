//! Rendered images: decode a frame with dicom-pixeldata, apply the Modality LUT and the
//! file's (or the caller's) window, and encode JPEG or PNG with `image`.
//! MONOCHROME1 is inverted by dicom-pixeldata's default, so CR/DX keep their polarity.

use std::io::Cursor;

use dicom_pixeldata::image::{self, DynamicImage, ImageFormat};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutFunction, VoiLutOption, WindowLevel};

use crate::pixels::native_if_jpeg12;
use crate::{open_part10, MediaError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Jpeg,
    Png,
    Svg,
}

/// Query parameters of a rendered resource (PS3.18 8.3.5).
#[derive(Debug, Clone)]
pub struct RenderParams {
    pub format: Format,
    /// (center, width, VOI LUT function)
    pub window: Option<(f64, f64, VoiLutFunction)>,
    pub quality: u8,
    pub viewport: Option<(u32, u32)>,
    /// the client named no image type (no Accept, or a wildcard): the resource picks its
    /// natural one (SVG for ECG paper, JPEG for images)
    pub any_format: bool,
}

impl RenderParams {
    pub fn parse(params: &[(String, String)], accept: &str) -> Result<Self, String> {
        let format = if accept.contains("image/png") {
            Format::Png
        } else if accept.contains("image/svg+xml") {
            Format::Svg
        } else if accept.is_empty() || accept.contains("image/jpeg") || accept.contains("*/*") || accept.contains("image/*") {
            Format::Jpeg
        } else {
            return Err(format!("cannot render as {accept:?}: ask for image/jpeg, image/png or image/svg+xml"));
        };
        let any_format = !["image/png", "image/jpeg", "image/svg+xml"].iter().any(|t| accept.contains(t));
        let mut p = RenderParams { format, window: None, quality: 90, viewport: None, any_format };
        for (k, v) in params {
            match k.as_str() {
                "window" => {
                    let parts: Vec<&str> = v.split(',').collect();
                    let num = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("window {v:?}: expected center,width[,function]"));
                    if parts.len() < 2 {
                        return Err(format!("window {v:?}: expected center,width[,function]"));
                    }
                    let (c, w) = (num(parts[0])?, num(parts[1])?);
                    if w <= 0.0 {
                        return Err("window width must be positive".into());
                    }
                    let function = match parts.get(2).map(|f| f.trim().to_ascii_uppercase()).as_deref() {
                        None | Some("LINEAR") => VoiLutFunction::Linear,
                        Some("LINEAR_EXACT") => VoiLutFunction::LinearExact,
                        Some("SIGMOID") => VoiLutFunction::Sigmoid,
                        Some(other) => return Err(format!("window function {other:?}: use linear, linear_exact or sigmoid")),
                    };
                    p.window = Some((c, w, function));
                }
                "quality" => {
                    p.quality = v.parse::<u8>().ok().filter(|q| (1..=100).contains(q)).ok_or_else(|| format!("quality {v:?} must be 1-100"))?
                }
                "viewport" => {
                    let parts: Vec<u32> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
                    match parts.as_slice() {
                        [w, h] if *w > 0 && *h > 0 && *w <= 8192 && *h <= 8192 => p.viewport = Some((*w, *h)),
                        _ => return Err(format!("viewport {v:?}: expected width,height (1-8192)")),
                    }
                }
                "accept" => {}
                other => return Err(format!("unsupported rendering parameter {other:?}")),
            }
        }
        Ok(p)
    }
}

/// An encoded picture.
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Render frame `frame` (1-based) of a stored Part-10 file.
pub fn render_frame(file: &[u8], frame: u32, p: &RenderParams) -> Result<Rendered, MediaError> {
    let obj = native_if_jpeg12(open_part10(file)?)?;
    let decoded = obj.decode_pixel_data().map_err(|e| {
        MediaError::Undecodable(format!("this instance's pixel data cannot be rendered: {e}"))
    })?;
    let frames = decoded.number_of_frames();
    if frame == 0 || frame > frames {
        return Err(MediaError::OutOfRange(format!("frame {frame} is out of range: the instance has {frames} frame(s)")));
    }
    let photometric = obj
        .element_opt(dicom_dictionary_std::tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if photometric == "PALETTE COLOR" {
        let mut img = palette_frame(&obj, &decoded, frame - 1)?;
        if let Some((w, h)) = p.viewport {
            img = fit(img, w, h);
        }
        return encode(img, p);
    }
    let has = |tag| obj.element_opt(tag).ok().flatten().is_some();
    let voi = match p.window {
        Some((center, width, function)) => VoiLutOption::CustomWithFunction(WindowLevel { center, width }, function),
        None if photometric.starts_with("MONOCHROME")
            && !has(dicom_dictionary_std::tags::WINDOW_CENTER)
            && !has(dicom_dictionary_std::tags::VOILUT_SEQUENCE) =>
        {
            // No VOI in the file: stretch this frame's modality values over the display range.
            // (dicom-pixeldata's own fallback maps signed data without a rescale to black.)
            let values: Vec<f64> = decoded
                .to_vec_frame(frame - 1)
                .map_err(|e| MediaError::Undecodable(format!("this frame cannot be rendered: {e}")))?;
            let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
            let window = WindowLevel { center: (lo + hi) / 2.0, width: (hi - lo).max(1.0) };
            VoiLutOption::CustomWithFunction(window, VoiLutFunction::LinearExact)
        }
        None => VoiLutOption::First,
    };
    let options = ConvertOptions::new().with_voi_lut(voi).force_8bit();
    let mut img = decoded
        .to_dynamic_image_with_options(frame - 1, &options)
        .map_err(|e| MediaError::Undecodable(format!("this frame cannot be rendered: {e}")))?;
    // Presentation LUT Shape (2050,0020) INVERSE on MONOCHROME2: display inverted.
    // (MONOCHROME1 is already inverted by dicom-pixeldata; its INVERSE means just that.)
    let inverse = obj
        .element_opt(dicom_dictionary_std::tags::PRESENTATION_LUT_SHAPE)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .is_some_and(|v| v.trim() == "INVERSE");
    if inverse && photometric == "MONOCHROME2" {
        img.invert();
    }
    if let Some((w, h)) = p.viewport {
        img = fit(img, w, h);
    }
    encode(img, p)
}

/// Scale down to fit a viewport, keeping the aspect ratio; never up. The client scales up
/// for nothing, and an 8192×8192 viewport on a 4×4 image would otherwise make the server
/// hold 200 MB for a few bytes of film (outside the decoding budget, which counts pixels
/// of the source).
fn fit(img: DynamicImage, w: u32, h: u32) -> DynamicImage {
    if img.width() <= w && img.height() <= h {
        return img;
    }
    img.resize(w, h, image::imageops::FilterType::Triangle)
}

pub fn encode(img: DynamicImage, p: &RenderParams) -> Result<Rendered, MediaError> {
    let mut out = Vec::new();
    match p.format {
        Format::Png => {
            img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .map_err(|e| MediaError::Encode(format!("PNG encoding failed: {e}")))?;
            Ok(Rendered { bytes: out, content_type: "image/png" })
        }
        Format::Jpeg | Format::Svg => {
            let img = match img {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
                DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
                    DynamicImage::ImageLuma8(img.to_luma8())
                }
                other => DynamicImage::ImageRgb8(other.to_rgb8()),
            };
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, p.quality)
                .encode_image(&img)
                .map_err(|e| MediaError::Encode(format!("JPEG encoding failed: {e}")))?;
            Ok(Rendered { bytes: out, content_type: "image/jpeg" })
        }
    }
}

/// PALETTE COLOR (PS3.3 C.7.6.3.1.5): dicom-pixeldata 0.10 gives the stored indices, so the
/// Red/Green/Blue Palette Color LUTs are applied here.
fn palette_frame(
    obj: &dicom_object::DefaultDicomObject,
    decoded: &dicom_pixeldata::DecodedPixelData<'_>,
    frame: u32,
) -> Result<DynamicImage, MediaError> {
    use dicom_dictionary_std::tags;
    let bad = |why: &str| MediaError::Undecodable(format!("palette color image cannot be rendered: {why}"));
    let ints = |tag| -> Result<Vec<u32>, MediaError> {
        obj.element(tag)
            .map_err(|_| bad(&format!("{tag} is missing (segmented palettes are not supported)")))?
            .to_multi_int::<u32>()
            .map_err(|e| bad(&e.to_string()))
    };
    let lut = |desc_tag, data_tag| -> Result<(Vec<u16>, u32, u32), MediaError> {
        let desc = ints(desc_tag)?;
        if desc.len() != 3 {
            return Err(bad("a LUT descriptor needs 3 values"));
        }
        let entries = if desc[0] == 0 { 65536 } else { desc[0] };
        let bits = desc[2];
        let raw = obj.element(data_tag).map_err(|_| bad(&format!("{data_tag} is missing")))?.to_bytes().map_err(|e| bad(&e.to_string()))?;
        let values: Vec<u16> = if bits == 8 && raw.len() as u32 == entries {
            raw.iter().map(|b| *b as u16).collect()
        } else {
            raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
        };
        if values.is_empty() {
            return Err(bad("an empty LUT"));
        }
        Ok((values, desc[1], bits))
    };
    let (r, first, bits) = lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let (g, _, _) = lut(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let (b, _, _) = lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let (cols, rows) = (decoded.columns(), decoded.rows());
    let data = decoded.frame_data(frame).map_err(|e| bad(&e.to_string()))?;
    let indices: Vec<u32> = if decoded.bits_allocated() > 8 {
        data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
    } else {
        data.iter().map(|v| *v as u32).collect()
    };
    // entries are 8 or 16 bits; scale to 8
    let shift = if bits > 8 { bits - 8 } else { 0 };
    let pick = |t: &Vec<u16>, i: u32| -> u8 {
        let k = (i.saturating_sub(first) as usize).min(t.len() - 1);
        (t[k] >> shift) as u8
    };
    let mut img = image::RgbImage::new(cols, rows);
    for (px, idx) in img.pixels_mut().zip(indices) {
        *px = image::Rgb([pick(&r, idx), pick(&g, idx), pick(&b, idx)]);
    }
    Ok(DynamicImage::ImageRgb8(img))
}
