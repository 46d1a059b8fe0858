//! ECG waveforms: decode the Waveform Sequence of 12-lead / general ECG instances into
//! physical units (µV) and draw them on the standard paper grid (25 mm/s, 10 mm/mV) as
//! SVG: 3×4 leads of 2.5 s each plus a 10 s lead II rhythm strip, with a header. PNG and
//! JPEG are the same SVG rasterised by resvg, with the system's fonts (Noto CJK for the
//! Chinese header: Debian's fonts-noto-cjk).

use std::fmt::Write as _;

use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::escape::esc;
use crate::render::{Format, RenderParams, Rendered};
use crate::{open_part10, MediaError};

pub use readhub_types::sop::is_ecg_waveform as is_waveform;

/// One decoded channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Channel {
    /// normalised lead label: I, II, III, aVR, aVL, aVF, V1 … V6, or the device's own
    pub label: String,
    pub samples_uv: Vec<f32>,
}

/// A measurement or note the device made (Waveform Annotation Sequence): HR, PR, QRS, QT,
/// QTc, axis, or its interpretation text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Annotation {
    pub name: Option<String>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub text: Option<String>,
}

/// One multiplex group, decoded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waveform {
    pub sampling_frequency: f64,
    pub channels: Vec<Channel>,
    pub filter_low_hz: Option<f64>,
    pub filter_high_hz: Option<f64>,
    pub notch_hz: Option<f64>,
}

const WAVEFORM_SEQUENCE: Tag = Tag(0x5400, 0x0100);
const CHANNEL_DEFINITION_SEQUENCE: Tag = Tag(0x003A, 0x0200);
const CHANNEL_SOURCE_SEQUENCE: Tag = Tag(0x003A, 0x0208);
const CHANNEL_SENSITIVITY: Tag = Tag(0x003A, 0x0210);
const CHANNEL_SENSITIVITY_UNITS_SEQUENCE: Tag = Tag(0x003A, 0x0211);
const CHANNEL_SENSITIVITY_CORRECTION: Tag = Tag(0x003A, 0x0212);
const CHANNEL_BASELINE: Tag = Tag(0x003A, 0x0213);
const FILTER_LOW: Tag = Tag(0x003A, 0x0220);
const FILTER_HIGH: Tag = Tag(0x003A, 0x0221);
const NOTCH: Tag = Tag(0x003A, 0x0222);
const NUMBER_OF_CHANNELS: Tag = Tag(0x003A, 0x0005);
const NUMBER_OF_SAMPLES: Tag = Tag(0x003A, 0x0010);
const SAMPLING_FREQUENCY: Tag = Tag(0x003A, 0x001A);
const BITS_ALLOCATED: Tag = Tag(0x5400, 0x1004);
const SAMPLE_INTERPRETATION: Tag = Tag(0x5400, 0x1006);
const WAVEFORM_DATA: Tag = Tag(0x5400, 0x1010);
const WAVEFORM_ANNOTATION_SEQUENCE: Tag = Tag(0x0040, 0xB020);
const CONCEPT_NAME_CODE_SEQUENCE: Tag = Tag(0x0040, 0xA043);
const NUMERIC_VALUE: Tag = Tag(0x0040, 0xA30A);
const MEASUREMENT_UNITS_CODE_SEQUENCE: Tag = Tag(0x0040, 0x08EA);
const UNFORMATTED_TEXT_VALUE: Tag = Tag(0x0070, 0x0006);

fn first_item(o: &InMemDicomObject, tag: Tag) -> Option<InMemDicomObject> {
    o.element_opt(tag).ok().flatten()?.items()?.first().cloned()
}

/// The device's own measurements and statements.
pub fn annotations(obj: &InMemDicomObject) -> Vec<Annotation> {
    let Some(items) = obj.element_opt(WAVEFORM_ANNOTATION_SEQUENCE).ok().flatten().and_then(|e| e.items().map(|i| i.to_vec())) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|a| Annotation {
            name: first_item(a, CONCEPT_NAME_CODE_SEQUENCE).and_then(|c| str_of(&c, tags::CODE_MEANING)),
            value: f64_of(a, NUMERIC_VALUE),
            unit: first_item(a, MEASUREMENT_UNITS_CODE_SEQUENCE).and_then(|u| str_of(&u, tags::CODE_VALUE)),
            text: str_of(a, UNFORMATTED_TEXT_VALUE).filter(|t| !t.is_empty()),
        })
        .filter(|a| a.name.is_some() || a.text.is_some())
        .collect()
}

fn f64_of(o: &InMemDicomObject, tag: Tag) -> Option<f64> {
    o.element_opt(tag).ok().flatten()?.to_float64().ok()
}

fn str_of(o: &InMemDicomObject, tag: Tag) -> Option<String> {
    Some(o.element_opt(tag).ok().flatten()?.to_str().ok()?.trim().to_string())
}

pub use readhub_types::lead::lead_label;

/// Decode the first multiplex group that has channels.
pub fn decode(obj: &InMemDicomObject) -> Result<Waveform, String> {
    let seq = obj
        .element_opt(WAVEFORM_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .ok_or("the instance has no Waveform Sequence")?;
    let group = seq
        .iter()
        .find(|g| f64_of(g, NUMBER_OF_CHANNELS).unwrap_or(0.0) > 0.0)
        .ok_or("the Waveform Sequence has no channels")?;
    let n_ch = f64_of(group, NUMBER_OF_CHANNELS).unwrap_or(0.0) as usize;
    let n_samples = f64_of(group, NUMBER_OF_SAMPLES).ok_or("Number of Waveform Samples is missing")? as usize;
    let fs = f64_of(group, SAMPLING_FREQUENCY).filter(|f| *f > 0.0).ok_or("Sampling Frequency is missing")?;
    let bits = f64_of(group, BITS_ALLOCATED).unwrap_or(16.0) as u32;
    let interp = str_of(group, SAMPLE_INTERPRETATION).unwrap_or_else(|| "SS".into());
    let data = group.element_opt(WAVEFORM_DATA).ok().flatten().ok_or("Waveform Data is missing")?;
    let raw: Vec<f64> = match (data.value().primitive(), bits, interp.as_str()) {
        (Some(PrimitiveValue::U16(v)), 16, "SS") => v.iter().map(|x| *x as i16 as f64).collect(),
        (Some(PrimitiveValue::U16(v)), 16, _) => v.iter().map(|x| *x as f64).collect(),
        (Some(PrimitiveValue::I16(v)), 16, _) => v.iter().map(|x| *x as f64).collect(),
        (Some(PrimitiveValue::U8(v)), 16, "SS") => v.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        (Some(PrimitiveValue::U8(v)), 16, _) => v.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        (Some(PrimitiveValue::U8(v)), 8, "SB") => v.iter().map(|x| *x as i8 as f64).collect(),
        (Some(PrimitiveValue::U8(v)), 8, _) => v.iter().map(|x| *x as f64).collect(),
        (Some(PrimitiveValue::U8(v)), 32, "SL") => v.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        (Some(PrimitiveValue::U32(v)), 32, "SL") => v.iter().map(|x| *x as i32 as f64).collect(),
        (Some(PrimitiveValue::I32(v)), 32, _) => v.iter().map(|x| *x as f64).collect(),
        (_, b, i) => return Err(format!("unsupported waveform encoding: {b} bits, {i}")),
    };
    if raw.len() < n_ch * n_samples {
        return Err(format!(
            "Waveform Data holds {} samples, {} channels × {} samples announced",
            raw.len(),
            n_ch,
            n_samples
        ));
    }
    let defs: Vec<InMemDicomObject> = group
        .element_opt(CHANNEL_DEFINITION_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .unwrap_or_default();
    let mut channels = Vec::with_capacity(n_ch);
    let (mut lo, mut hi, mut notch) = (None, None, None);
    for c in 0..n_ch {
        let def = defs.get(c);
        let label = def
            .and_then(|d| d.element_opt(CHANNEL_SOURCE_SEQUENCE).ok().flatten())
            .and_then(|e| e.items().and_then(|i| i.first().cloned()))
            .and_then(|src| str_of(&src, tags::CODE_MEANING))
            .map(|m| lead_label(&m))
            .unwrap_or_else(|| format!("Ch{}", c + 1));
        let sens = def.and_then(|d| f64_of(d, CHANNEL_SENSITIVITY)).unwrap_or(1.0);
        let corr = def.and_then(|d| f64_of(d, CHANNEL_SENSITIVITY_CORRECTION)).unwrap_or(1.0);
        let base = def.and_then(|d| f64_of(d, CHANNEL_BASELINE)).unwrap_or(0.0);
        let unit = def
            .and_then(|d| d.element_opt(CHANNEL_SENSITIVITY_UNITS_SEQUENCE).ok().flatten())
            .and_then(|e| e.items().and_then(|i| i.first().cloned()))
            .and_then(|u| str_of(&u, tags::CODE_VALUE))
            .unwrap_or_else(|| "uV".into());
        let to_uv = match unit.as_str() {
            "mV" => 1000.0,
            "V" => 1_000_000.0,
            _ => 1.0,
        };
        if let Some(d) = def {
            lo = lo.or(f64_of(d, FILTER_LOW));
            hi = hi.or(f64_of(d, FILTER_HIGH));
            notch = notch.or(f64_of(d, NOTCH));
        }
        let samples_uv = (0..n_samples)
            .map(|s| ((raw[s * n_ch + c] + base) * sens * corr * to_uv) as f32)
            .collect();
        channels.push(Channel { label, samples_uv });
    }
    Ok(Waveform { sampling_frequency: fs, channels, filter_low_hz: lo, filter_high_hz: hi, notch_hz: notch })
}

const MM_PER_S: f64 = 25.0;
const MM_PER_MV: f64 = 10.0;
const ROW_PITCH: f64 = 30.0;
const LEFT: f64 = 10.0;
const TOP: f64 = 22.0;
const STRIP_S: f64 = 10.0;


/// Draw a waveform on the standard grid. `header` lines go on top.
pub fn to_svg(w: &Waveform, header: &[String]) -> String {
    let by_label = |l: &str| w.channels.iter().find(|c| c.label == l);
    let twelve = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"].iter().all(|l| by_label(l).is_some());
    // rows of (channel, start second, duration)
    let rows: Vec<Vec<(&Channel, f64, f64)>> = if twelve {
        let grid = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
        let mut rows: Vec<Vec<_>> = grid
            .iter()
            .map(|r| r.iter().enumerate().map(|(c, l)| (by_label(l).expect("checked"), c as f64 * 2.5, 2.5)).collect())
            .collect();
        rows.push(vec![(by_label("II").expect("checked"), 0.0, STRIP_S)]);
        rows
    } else {
        w.channels.iter().map(|c| vec![(c, 0.0, STRIP_S)]).collect()
    };
    let width = LEFT + STRIP_S * MM_PER_S + 10.0;
    let height = TOP + rows.len() as f64 * ROW_PITCH + 8.0;
    let mut s = String::with_capacity(256 * 1024);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}" font-family="Noto Sans CJK SC, sans-serif">
<defs><pattern id="minor" width="1" height="1" patternUnits="userSpaceOnUse"><path d="M1 0V1H0" fill="none" stroke="#f3c4c4" stroke-width="0.08"/></pattern>
<pattern id="major" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="url(#minor)"/><path d="M5 0V5H0" fill="none" stroke="#e07a7a" stroke-width="0.2"/></pattern></defs>
<rect width="{width}" height="{height}" fill="#fff"/>
<rect x="{LEFT}" y="{gy}" width="{gw}" height="{gh}" fill="url(#major)" stroke="#e07a7a" stroke-width="0.2"/>
"##,
        gy = TOP - 4.0,
        gw = STRIP_S * MM_PER_S,
        gh = rows.len() as f64 * ROW_PITCH + 4.0,
    );
    for (i, line) in header.iter().enumerate() {
        let _ = writeln!(s, r#"<text x="{LEFT}" y="{}" font-size="3.2">{}</text>"#, 5.0 + i as f64 * 4.5, esc(line));
    }
    let fs = w.sampling_frequency;
    for (r, row) in rows.iter().enumerate() {
        let baseline = TOP + r as f64 * ROW_PITCH + ROW_PITCH / 2.0;
        // 1 mV calibration pulse, 0.2 s wide, at the left margin
        let _ = writeln!(
            s,
            r#"<path d="M{a} {b}h1v-{m}h5v{m}h1" fill="none" stroke="black" stroke-width="0.25"/>"#,
            a = LEFT - 8.0,
            b = baseline,
            m = MM_PER_MV
        );
        for (ch, start, dur) in row {
            let x0 = LEFT + start * MM_PER_S;
            let first = (start * fs).round() as usize;
            let last = (((start + dur) * fs).round() as usize).min(ch.samples_uv.len());
            let mut d = String::with_capacity((last.saturating_sub(first)) * 14);
            for (k, v) in ch.samples_uv[first.min(last)..last].iter().enumerate() {
                let x = x0 + k as f64 / fs * MM_PER_S;
                let y = baseline - (*v as f64) / 1000.0 * MM_PER_MV;
                let _ = write!(d, "{}{x:.2} {y:.2}", if k == 0 { "M" } else { "L" });
            }
            let _ = writeln!(s, r#"<path d="{d}" fill="none" stroke="black" stroke-width="0.22" stroke-linejoin="round"/>"#);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="3.5" font-weight="bold" class="lead">{}</text>"#,
                x0 + 1.0,
                baseline - 9.0,
                esc(&ch.label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Render a stored ECG instance (Part-10 bytes) for the `rendered` resource.
pub fn render_instance(file: &[u8], p: &RenderParams, site: &str) -> Result<Rendered, MediaError> {
    let obj = open_part10(file)?;
    let wf = decode(&obj).map_err(|e| MediaError::Undecodable(format!("waveform cannot be decoded: {e}")))?;
    let text = |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
    let mut filters = String::new();
    if let (Some(lo), Some(hi)) = (wf.filter_low_hz, wf.filter_high_hz) {
        let _ = write!(filters, "  {lo}–{hi} Hz");
    }
    if let Some(n) = wf.notch_hz.filter(|n| *n > 0.0) {
        let _ = write!(filters, "  notch {n} Hz");
    }
    let header = vec![
        format!(
            "{}  ID {}  {}  {}",
            text(tags::PATIENT_NAME),
            text(tags::PATIENT_ID),
            text(tags::PATIENT_SEX),
            text(tags::PATIENT_BIRTH_DATE)
        ),
        format!("{}  {} {}  {}", site, text(tags::STUDY_DATE), text(tags::STUDY_TIME), text(tags::STUDY_DESCRIPTION)),
        format!("25 mm/s  10 mm/mV  {} Hz{}", wf.sampling_frequency, filters),
    ];
    let svg = to_svg(&wf, &header);
    if p.format == Format::Svg || p.any_format {
        return Ok(Rendered { bytes: svg.into_bytes(), content_type: "image/svg+xml" });
    }
    rasterize(&svg, p)
}

/// Pixels per millimetre of paper when no viewport is asked for: 6 (≈150 dpi) keeps the
/// 1 mm grid and a 0.1 mV notch visible.
const PX_PER_MM: f32 = 6.0;

/// The system's fonts, scanned once (memory-mapped, so the CJK fonts cost no heap).
pub fn fonts() -> std::sync::Arc<resvg::usvg::fontdb::Database> {
    static FONTS: std::sync::OnceLock<std::sync::Arc<resvg::usvg::fontdb::Database>> = std::sync::OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = resvg::usvg::fontdb::Database::new();
            db.load_system_fonts();
            if db.is_empty() {
                tracing::warn!("no system fonts found: ECG PNG/JPEG labels will be missing (install fonts-noto-cjk)");
            }
            std::sync::Arc::new(db)
        })
        .clone()
}

/// Rasterise the paper SVG to PNG or JPEG, at [`PX_PER_MM`] or fitted into `viewport`.
pub fn rasterize(svg: &str, p: &RenderParams) -> Result<Rendered, MediaError> {
    use resvg::{tiny_skia, usvg};
    let opt = usvg::Options { fontdb: fonts(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| MediaError::Encode(format!("ECG drawing is not valid SVG: {e}")))?;
    // the SVG's user unit is the millimetre (its viewBox), its size is in CSS px at 96 dpi
    let size = tree.size();
    let (mm_w, mm_h) = (size.width() * 25.4 / 96.0, size.height() * 25.4 / 96.0);
    let px_per_mm = match p.viewport {
        Some((w, h)) => (w as f32 / mm_w).min(h as f32 / mm_h),
        None => PX_PER_MM,
    };
    let (w, h) = ((mm_w * px_per_mm).round().max(1.0) as u32, (mm_h * px_per_mm).round().max(1.0) as u32);
    let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or_else(|| MediaError::OutOfRange(format!("viewport {w}x{h} is too large")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    let scale = w as f32 / size.width();
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    // opaque white background: premultiplied RGBA is plain RGBA here
    let rgba = image::RgbaImage::from_raw(w, h, pixmap.take()).ok_or_else(|| MediaError::Encode("pixmap size mismatch".into()))?;
    crate::render::encode(image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(rgba).to_rgb8()), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12 leads, 10 s at 500 Hz of a 1 Hz saw-tooth from -1000 to +1000 µV
    fn synthetic() -> Waveform {
        let labels = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
        Waveform {
            sampling_frequency: 500.0,
            channels: labels
                .iter()
                .map(|l| Channel { label: l.to_string(), samples_uv: (0..5000).map(|i| ((i % 500) as f32 - 250.0) * 4.0).collect() })
                .collect(),
            filter_low_hz: None,
            filter_high_hz: None,
            notch_hz: None,
        }
    }

    #[test]
    fn png_is_the_svg_rasterised() {
        let wf = synthetic();
        let svg = to_svg(&wf, &["张三 header".into()]);
        let p = RenderParams::parse(&[], "image/png").unwrap();
        let out = rasterize(&svg, &p).unwrap();
        assert_eq!(out.content_type, "image/png");
        let img = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
        assert_eq!(img.width(), 270 * 6, "6 px per mm of paper");
        // the first point of lead I: x = 10 mm, y = 47 mm; the trace is black there
        let dark = |x: u32, y: u32| (0..5).flat_map(|dx| (0..5).map(move |dy| (dx, dy))).any(|(dx, dy)| img.get_pixel(x + dx - 2, y + dy - 2).0[0] < 80);
        assert!(dark(60, 47 * 6), "trace missing at lead I's start");
        let p = RenderParams::parse(&[("viewport".into(), "540,400".into())], "image/jpeg").unwrap();
        let out = rasterize(&svg, &p).unwrap();
        assert_eq!(out.content_type, "image/jpeg");
        let img = image::load_from_memory(&out.bytes).unwrap();
        assert!(img.width() <= 540 && img.height() <= 400 && (img.width() == 540 || img.height() == 400));
    }

    #[test]
    fn svg_has_twelve_leads_and_rhythm_strip() {
        let wf = synthetic();
        let svg = to_svg(&wf, &["header".into()]);
        assert_eq!(svg.matches(r#"class="lead""#).count(), 13, "12 leads + the II rhythm strip");
        // 10 s at 25 mm/s is 250 mm of paper, plus margins
        assert!(svg.contains(r#"viewBox="0 0 270 "#), "{}", &svg[..200]);
        // lead I starts at the left edge, 0 s; its first sample is -1000 µV, and 1 mV is
        // 10 mm, so it sits 10 mm below the first row's baseline (22 + 15 = 37 mm)
        assert!(svg.contains(r#"<path d="M10.00 47.00"#), "first point of lead I misplaced");
        // 0.5 s later (12.5 mm) the saw-tooth has risen to -1000 + 250*4 = 0 µV: the baseline
        assert!(svg.contains("L22.50 37.00"), "time or amplitude scale is off");
    }
}
