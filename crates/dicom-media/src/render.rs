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
    Decoded::new(file)?.render(frame, p)
}

/// Render frame `frame` of a file once for several parameter sets that differ only in
/// viewport and quality (the pre-rendered thumbnail and preview): one decode, and each
/// picture byte for byte what [`render_frame`] makes of the same parameters.
pub fn render_frame_sizes(file: &[u8], frame: u32, window: Option<(f64, f64, VoiLutFunction)>, params: &[RenderParams]) -> Result<Vec<Rendered>, MediaError> {
    let img = frame_image(file, frame, window)?;
    params
        .iter()
        .map(|p| {
            let img = match p.viewport {
                Some((w, h)) => fit(img.clone(), w, h),
                None => img.clone(),
            };
            encode(img, p)
        })
        .collect()
}

/// A film decoded once: its attributes and every frame's samples, so that any frame can
/// be drawn in any window and at any size without decoding the file again (the viewer asks
/// for the same film at several sizes and windows; a burst of readers for the same one).
pub struct Decoded {
    obj: dicom_object::DefaultDicomObject,
    decoded: dicom_pixeldata::DecodedPixelData<'static>,
    photometric: String,
    /// each frame's range of modality values, once found (the window of a film without one)
    ranges: std::sync::Mutex<std::collections::HashMap<u32, (f64, f64)>>,
}

impl Decoded {
    /// Decode a stored Part-10 file.
    pub fn new(file: &[u8]) -> Result<Self, MediaError> {
        let mut obj = native_if_jpeg12(open_part10(file)?)?;
        let decoded = obj
            .decode_pixel_data()
            .map_err(|e| MediaError::Undecodable(format!("this instance's pixel data cannot be rendered: {e}")))?
            .to_owned();
        // the samples are in `decoded` now: the encoded copy need not be held as well
        obj.remove_element(dicom_dictionary_std::tags::PIXEL_DATA);
        let photometric = obj
            .element_opt(dicom_dictionary_std::tags::PHOTOMETRIC_INTERPRETATION)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Ok(Decoded { obj, decoded, photometric, ranges: Default::default() })
    }

    /// Bytes held, about (the decoded samples dominate).
    pub fn size(&self) -> usize {
        self.decoded.data().len() + 64 * 1024
    }

    /// Frame `frame` (1-based), through the Modality LUT and the window (the given one,
    /// else the file's), as an 8-bit picture at full size.
    pub fn image(&self, frame: u32, window: Option<(f64, f64, VoiLutFunction)>) -> Result<DynamicImage, MediaError> {
        let (obj, decoded, photometric) = (&self.obj, &self.decoded, self.photometric.as_str());
        let frames = decoded.number_of_frames();
        if frame == 0 || frame > frames {
            return Err(MediaError::OutOfRange(format!("frame {frame} is out of range: the instance has {frames} frame(s)")));
        }
        if photometric == "PALETTE COLOR" {
            return palette_frame(obj, decoded, frame - 1);
        }
        let has = |tag| obj.element_opt(tag).ok().flatten().is_some();
        let voi = match window {
            Some((center, width, function)) => VoiLutOption::CustomWithFunction(WindowLevel { center, width }, function),
            None if photometric.starts_with("MONOCHROME")
                && !has(dicom_dictionary_std::tags::WINDOW_CENTER)
                && !has(dicom_dictionary_std::tags::VOILUT_SEQUENCE) =>
            {
                // No VOI in the file: stretch this frame's modality values over the display range.
                // (dicom-pixeldata's own fallback maps signed data without a rescale to black.)
                let (lo, hi) = self.range(frame - 1)?;
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
        Ok(img)
    }

    /// The lowest and highest modality value of frame `frame` (0-based), found once: from
    /// the stored samples and the rescale (a 2500×3000 film: a few ms, where converting
    /// every sample to a float first took ~60 ms and 60 MB).
    fn range(&self, frame: u32) -> Result<(f64, f64), MediaError> {
        if let Some(r) = self.ranges.lock().unwrap_or_else(|p| p.into_inner()).get(&frame) {
            return Ok(*r);
        }
        let d = &self.decoded;
        let bad = |e: String| MediaError::Undecodable(format!("this frame cannot be rendered: {e}"));
        let data = d.frame_data(frame).map_err(|e| bad(e.to_string()))?;
        let signed = d.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
        let (raw_lo, raw_hi) = match (d.bits_allocated(), signed) {
            (8, false) => data.iter().fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(i64::from(*v)), h.max(i64::from(*v)))),
            (8, true) => data.iter().fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(i64::from(*v as i8)), h.max(i64::from(*v as i8)))),
            (16, false) => data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).fold((u16::MAX, 0), |(l, h), v| (l.min(v), h.max(v))).into_i64(),
            (16, true) => data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).fold((i16::MAX, i16::MIN), |(l, h), v| (l.min(v), h.max(v))).into_i64(),
            _ => {
                // 32-bit and others: the general way
                let values: Vec<f64> = d.to_vec_frame(frame).map_err(|e| bad(e.to_string()))?;
                let r = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
                self.ranges.lock().unwrap_or_else(|p| p.into_inner()).insert(frame, r);
                return Ok(r);
            }
        };
        let rescale = d.rescale().map_err(|e| bad(e.to_string()))?;
        let r = rescale.get(frame as usize).or(rescale.first()).copied().unwrap_or(dicom_pixeldata::Rescale { slope: 1.0, intercept: 0.0 });
        let (a, b) = (raw_lo as f64 * r.slope + r.intercept, raw_hi as f64 * r.slope + r.intercept);
        let range = if raw_lo > raw_hi { (0.0, 1.0) } else { (a.min(b), a.max(b)) };
        self.ranges.lock().unwrap_or_else(|p| p.into_inner()).insert(frame, range);
        Ok(range)
    }

    /// Render frame `frame` (1-based) with `p`: what [`render_frame`] makes of the file.
    pub fn render(&self, frame: u32, p: &RenderParams) -> Result<Rendered, MediaError> {
        let mut img = self.image(frame, p.window)?;
        if let Some((w, h)) = p.viewport {
            img = fit(img, w, h);
        }
        encode(img, p)
    }
}

/// A (low, high) pair of samples as i64.
trait IntoI64 {
    fn into_i64(self) -> (i64, i64);
}
impl IntoI64 for (u16, u16) {
    fn into_i64(self) -> (i64, i64) {
        (i64::from(self.0), i64::from(self.1))
    }
}
impl IntoI64 for (i16, i16) {
    fn into_i64(self) -> (i64, i64) {
        (i64::from(self.0), i64::from(self.1))
    }
}

/// Frame `frame` (1-based) of a stored file as an 8-bit picture (see [`Decoded::image`]).
fn frame_image(file: &[u8], frame: u32, window: Option<(f64, f64, VoiLutFunction)>) -> Result<DynamicImage, MediaError> {
    Decoded::new(file)?.image(frame, window)
}

/// Scale down to fit a viewport, keeping the aspect ratio; never up. The client scales up
/// for nothing, and an 8192×8192 viewport on a 4×4 image would otherwise make the server
/// hold 200 MB for a few bytes of film (outside the decoding budget, which counts pixels
/// of the source). Bilinear (the `Triangle` filter `image` used) with fast_image_resize's
/// SIMD convolution: a 2500×3000 film to 1024 px in a few ms instead of ~60.
pub fn fit(img: DynamicImage, w: u32, h: u32) -> DynamicImage {
    if img.width() <= w && img.height() <= h {
        return img;
    }
    let ratio = (f64::from(w) / f64::from(img.width())).min(f64::from(h) / f64::from(img.height()));
    let nw = ((f64::from(img.width()) * ratio).round() as u32).clamp(1, w);
    let nh = ((f64::from(img.height()) * ratio).round() as u32).clamp(1, h);
    let (img, pixel) = match img {
        DynamicImage::ImageLuma8(_) => (img, fast_image_resize::PixelType::U8),
        DynamicImage::ImageRgb8(_) => (img, fast_image_resize::PixelType::U8x3),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            (DynamicImage::ImageLuma8(img.to_luma8()), fast_image_resize::PixelType::U8)
        }
        other => (DynamicImage::ImageRgb8(other.to_rgb8()), fast_image_resize::PixelType::U8x3),
    };
    let (sw, sh) = (img.width(), img.height());
    let resized = fast_image_resize::images::Image::from_vec_u8(sw, sh, img.into_bytes(), pixel)
        .map_err(|e| e.to_string())
        .and_then(|src| {
            let mut dst = fast_image_resize::images::Image::new(nw, nh, pixel);
            let options = fast_image_resize::ResizeOptions::new()
                .resize_alg(fast_image_resize::ResizeAlg::Convolution(fast_image_resize::FilterType::Bilinear));
            fast_image_resize::Resizer::new().resize(&src, &mut dst, &options).map_err(|e| e.to_string())?;
            Ok(dst.into_vec())
        });
    let out = resized.ok().and_then(|buf| match pixel {
        fast_image_resize::PixelType::U8 => image::GrayImage::from_raw(nw, nh, buf).map(DynamicImage::ImageLuma8),
        _ => image::RgbImage::from_raw(nw, nh, buf).map(DynamicImage::ImageRgb8),
    });
    // the sizes are checked above, so this does not fail; an empty picture if it ever did
    out.unwrap_or_else(|| DynamicImage::ImageLuma8(image::GrayImage::new(nw, nh)))
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
            // libjpeg-turbo-rs (libjpeg-turbo's SIMD encoder, in Rust): 4:4:4 like `image`'s
            // encoder, and faster (BENCHMARKS.md: the encoders side by side)
            let (format, subsampling) = match &img {
                DynamicImage::ImageLuma8(_) => (libjpeg_turbo_rs::PixelFormat::Grayscale, libjpeg_turbo_rs::Subsampling::S444),
                _ => (libjpeg_turbo_rs::PixelFormat::Rgb, libjpeg_turbo_rs::Subsampling::S444),
            };
            let (w, h) = (img.width() as usize, img.height() as usize);
            out = libjpeg_turbo_rs::compress(img.as_bytes(), w, h, format, p.quality, subsampling)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(path)).unwrap()
    }

    /// A film decoded once renders, in any window and size, what a fresh decode renders;
    /// the range of a frame without a window is the range of its modality values.
    #[test]
    fn one_decode_renders_as_fresh_decodes_do() {
        for file in ["pydicom/test_files/CT_small.dcm", "pydicom-data/RG1_UNCR.dcm", "pydicom-data/emri_small_RLE.dcm"] {
            let bytes = sample(file);
            let film = Decoded::new(&bytes).unwrap();
            let values: Vec<f64> = film.decoded.to_vec_frame(0).unwrap();
            let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            assert_eq!(film.range(0).unwrap(), (lo, hi), "{file}");
            for params in [vec![], vec![("viewport", "128,128")], vec![("window", "40,400"), ("viewport", "300,300")], vec![("quality", "70")]] {
                let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let p = RenderParams::parse(&params, "image/jpeg").unwrap();
                assert!(film.render(1, &p).unwrap().bytes == render_frame(&bytes, 1, &p).unwrap().bytes, "{file} {params:?}");
            }
        }
    }
}
