//! The report as a PDF (A4), made by the server so that every site prints the same
//! document and it can later go back to the sites' own systems. Text is set in Noto Sans
//! CJK SC (Debian's fonts-noto-cjk), embedded as a subset by krilla: only the glyphs the
//! report uses travel, so a one-page report is tens of kilobytes, not the font's 19 MB.

use axum::extract::Path;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::error::ApiResult;
use super::print::fmt_time;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::PathBuilder;
use krilla::geom::Point;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::paint::Stroke;
use krilla::text::Font;
use krilla::text::TextDirection;
use std::sync::Arc;
use std::sync::OnceLock;
use super::readable_report;

/// A4 in PDF points (1/72 inch).
const PAGE_W: f32 = 595.28;

const PAGE_H: f32 = 841.89;

const MARGIN: f32 = 48.0;

const BODY: f32 = 11.0;

const LINE: f32 = BODY * 1.6;

/// The font face and its metrics, loaded once from the system's font database.
struct CjkFont {
    font: Font,
    data: Arc<dyn AsRef<[u8]> + Send + Sync>,
    index: u32,
}

fn cjk_font() -> Result<&'static CjkFont, ApiError> {
    static FONT: OnceLock<Option<CjkFont>> = OnceLock::new();
    FONT.get_or_init(|| {
        let db = dicom_media::ecg::fonts();
        let query = resvg::usvg::fontdb::Query {
            families: &[resvg::usvg::fontdb::Family::Name("Noto Sans CJK SC")],
            ..Default::default()
        };
        let id = db.query(&query)?;
        let (source, index) = db.face_source(id)?;
        let data: Arc<dyn AsRef<[u8]> + Send + Sync> = match source {
            resvg::usvg::fontdb::Source::Binary(b) => b,
            resvg::usvg::fontdb::Source::SharedFile(_, b) => b,
            resvg::usvg::fontdb::Source::File(path) => Arc::new(std::fs::read(path).ok()?),
        };
        let font = Font::new(data.clone().into(), index)?;
        Some(CjkFont { font, data, index })
    })
    .as_ref()
    .ok_or_else(|| {
        ApiError::Unavailable(
            "the PDF needs the font Noto Sans CJK SC; install Debian's fonts-noto-cjk (apt-get install fonts-noto-cjk) \
             / 生成PDF需要 Noto Sans CJK SC 字体，请安装 fonts-noto-cjk"
                .into(),
        )
    })
}

/// Lays text out top to bottom, starting a new page when one is full.
struct Writer<'a> {
    doc: Document,
    font: &'a CjkFont,
    face: ttf_parser::Face<'a>,
    pages: Vec<Vec<Op>>,
    y: f32,
}

/// What a page holds until it is drawn: krilla borrows the document while a page is open,
/// so the layout is decided first and drawn at the end.
enum Op {
    Text { x: f32, y: f32, size: f32, text: String },
    Rule { y: f32, width: f32 },
    /// an open polyline (ECG grid lines and trace)
    Line { points: Vec<(f32, f32)>, color: (u8, u8, u8), width: f32 },
}

impl<'a> Writer<'a> {
    fn new(font: &'a CjkFont) -> Result<Self, ApiError> {
        let face = ttf_parser::Face::parse((*font.data).as_ref(), font.index)
            .map_err(|e| ApiError::Internal(format!("the CJK font cannot be parsed: {e}")))?;
        Ok(Writer { doc: Document::new(), font, face, pages: vec![Vec::new()], y: MARGIN })
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        let upem = f32::from(self.face.units_per_em());
        text.chars()
            .map(|c| {
                self.face
                    .glyph_index(c)
                    .and_then(|g| self.face.glyph_hor_advance(g))
                    .map_or(size * 0.6, |a| f32::from(a) * size / upem)
            })
            .sum()
    }

    fn room(&mut self, needed: f32) {
        if self.y + needed > PAGE_H - MARGIN {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
    }

    fn text_at(&mut self, x: f32, size: f32, text: &str) {
        let y = self.y + size;
        self.pages.last_mut().expect("a page").push(Op::Text { x, y, size, text: text.to_string() });
    }

    fn centred(&mut self, size: f32, text: &str) {
        self.room(size * 1.6);
        let x = (PAGE_W - self.width(text, size)) / 2.0;
        self.text_at(x.max(MARGIN), size, text);
        self.y += size * 1.6;
    }

    fn rule(&mut self, width: f32) {
        self.room(4.0);
        let y = self.y + 2.0;
        self.pages.last_mut().expect("a page").push(Op::Rule { y, width });
        self.y += 6.0;
    }

    /// A paragraph wrapped to the text width: at any character (Chinese has no spaces),
    /// and at explicit line breaks.
    fn paragraph(&mut self, size: f32, text: &str) {
        let max = PAGE_W - 2.0 * MARGIN;
        for line in text.lines() {
            let mut current = String::new();
            for c in line.chars() {
                current.push(c);
                if self.width(&current, size) > max {
                    current.pop();
                    // break Latin text at the last space when there is one
                    let cut = current.rfind(' ').filter(|&i| i > current.len() / 2).map(|i| i + 1).unwrap_or(current.len());
                    let rest = current.split_off(cut);
                    self.room(size * 1.6);
                    self.text_at(MARGIN, size, current.trim_end());
                    self.y += size * 1.6;
                    current = rest;
                    current.push(c);
                }
            }
            self.room(size * 1.6);
            self.text_at(MARGIN, size, &current);
            self.y += size * 1.6;
        }
    }

    fn heading(&mut self, text: &str) {
        self.y += 6.0;
        self.room(BODY * 1.3 * 3.0);
        self.text_at(MARGIN, BODY * 1.2, text);
        self.y += BODY * 1.2 * 1.5;
    }

    /// A rhythm strip on ECG paper: 25 mm/s, 10 mm/mV, the 1 mm and 5 mm grid, the lead's
    /// trace centred on its median.
    fn rhythm_strip(&mut self, ecg: &crate::ecg_analysis::ReportEcg) {
        const MM: f32 = 72.0 / 25.4;
        let (w_mm, h_mm) = ((crate::ecg_analysis::STRIP_SECONDS * 25.0) as f32, 30.0f32);
        self.room(h_mm * MM + BODY * 2.0);
        let (x0, y0) = (MARGIN, self.y + 2.0);
        let page = self.pages.last_mut().expect("a page");
        for k in 0..=(w_mm as usize) {
            let x = x0 + k as f32 * MM;
            let major = k % 5 == 0;
            page.push(Op::Line { points: vec![(x, y0), (x, y0 + h_mm * MM)], color: if major { (224, 122, 122) } else { (246, 200, 200) }, width: if major { 0.5 } else { 0.2 } });
        }
        for k in 0..=(h_mm as usize) {
            let y = y0 + k as f32 * MM;
            let major = k % 5 == 0;
            page.push(Op::Line { points: vec![(x0, y), (x0 + w_mm * MM, y)], color: if major { (224, 122, 122) } else { (246, 200, 200) }, width: if major { 0.5 } else { 0.2 } });
        }
        let n = ((crate::ecg_analysis::STRIP_SECONDS * ecg.sampling_frequency) as usize).min(ecg.strip.len());
        let mut sorted: Vec<f32> = ecg.strip[..n].to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mid = sorted.get(n / 2).copied().unwrap_or(0.0);
        let base = y0 + h_mm * MM / 2.0;
        let points: Vec<(f32, f32)> = ecg.strip[..n]
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let x = x0 + (k as f64 / ecg.sampling_frequency * 25.0) as f32 * MM;
                let y = (base - (v - mid) / 1000.0 * 10.0 * MM).clamp(y0, y0 + h_mm * MM);
                (x, y)
            })
            .collect();
        page.push(Op::Line { points, color: (0, 0, 0), width: 0.7 });
        page.push(Op::Text { x: x0 + 2.0, y: y0 + 9.0, size: 8.0, text: format!("{}  25 mm/s  10 mm/mV", ecg.strip_lead) });
        self.y = y0 + h_mm * MM + 6.0;
    }

    fn finish(mut self) -> Result<Vec<u8>, ApiError> {
        let n = self.pages.len();
        for (i, ops) in std::mem::take(&mut self.pages).into_iter().enumerate() {
            let settings = PageSettings::from_wh(PAGE_W, PAGE_H).expect("A4 is a valid size");
            let mut page = self.doc.start_page_with(settings);
            let mut surface = page.surface();
            surface.set_fill(Some(Fill { paint: rgb::Color::new(0, 0, 0).into(), ..Default::default() }));
            for op in ops {
                match op {
                    Op::Text { x, y, size, text } => {
                        surface.draw_text(Point::from_xy(x, y), self.font.font.clone(), size, &text, false, TextDirection::Auto);
                    }
                    Op::Line { points, color, width } => {
                        let mut pb = PathBuilder::new();
                        for (k, (x, y)) in points.iter().enumerate() {
                            if k == 0 { pb.move_to(*x, *y) } else { pb.line_to(*x, *y) }
                        }
                        if let Some(path) = pb.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke { paint: rgb::Color::new(color.0, color.1, color.2).into(), width, ..Default::default() }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                            surface.set_fill(Some(Fill { paint: rgb::Color::new(0, 0, 0).into(), ..Default::default() }));
                        }
                    }
                    Op::Rule { y, width } => {
                        let mut pb = PathBuilder::new();
                        pb.move_to(MARGIN, y);
                        pb.line_to(PAGE_W - MARGIN, y);
                        if let Some(path) = pb.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke { paint: rgb::Color::new(80, 80, 80).into(), width, ..Default::default() }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                            surface.set_fill(Some(Fill { paint: rgb::Color::new(0, 0, 0).into(), ..Default::default() }));
                        }
                    }
                }
            }
            if n > 1 {
                let label = format!("{} / {}", i + 1, n);
                surface.draw_text(Point::from_xy(PAGE_W / 2.0 - 10.0, PAGE_H - MARGIN / 2.0), self.font.font.clone(), 9.0, &label, false, TextDirection::Auto);
            }
            surface.finish();
            page.finish();
        }
        self.doc.finish().map_err(|e| ApiError::Internal(format!("the PDF could not be written: {e:?}")))
    }
}

/// The report as a PDF: the same content as the print page.
pub fn report_pdf(r: &worklist::reports::Report, ecg: Option<&crate::ecg_analysis::ReportEcg>) -> Result<Vec<u8>, ApiError> {
    let font = cjk_font()?;
    let mut w = Writer::new(font)?;
    let name = r.patient_name.as_deref().unwrap_or("").replace('^', " ");
    w.centred(17.0, &format!("{} {}", r.site_name, if ecg.is_some() { "心电图诊断报告" } else { "影像诊断报告" }));
    w.centred(10.0, "Diagnostic report · 远程诊断中心 Remote reading hub");
    w.rule(0.8);
    let meta = [
        format!("姓名 Name: {}    患者ID Patient ID: {}    性别 Sex: {}", name.trim(), r.patient_id, r.patient_sex.as_deref().unwrap_or("")),
        format!(
            "出生日期 Birth date: {}    检查日期 Study date: {}    检查号 Accession: {}",
            r.patient_birth_date.as_deref().unwrap_or(""),
            r.study_date.as_deref().unwrap_or(""),
            r.accession_number.as_deref().unwrap_or("")
        ),
        format!("检查 Study: {}    设备 Modality: {}", r.study_description.as_deref().unwrap_or(""), r.modalities),
    ];
    for line in &meta {
        w.paragraph(10.0, line);
    }
    w.rule(0.4);
    if r.corrected {
        w.paragraph(BODY, &format!("更正报告 Corrected report: {}", r.correction_reason.as_deref().unwrap_or("")));
    }
    if let Some(e) = ecg {
        // the key measurements and a lead II rhythm strip beside the conclusion
        w.heading("心电图测量 ECG measurements");
        let line = e.measures.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("    ");
        w.paragraph(10.0, &line);
        w.rhythm_strip(e);
        w.heading("心电图所见 ECG findings");
    } else {
        w.heading("检查所见 Findings");
    }
    w.paragraph(BODY, &r.findings);
    w.heading(if ecg.is_some() { "心电图诊断 ECG diagnosis" } else { "诊断意见 Impression" });
    w.paragraph(BODY, &r.impression);
    for a in &r.addenda {
        w.heading(&format!("补充报告 Addendum · {} · {}", a.author, fmt_time(Some(a.signed_at))));
        w.paragraph(BODY, &a.text);
    }
    w.y += LINE;
    w.rule(0.4);
    w.paragraph(
        10.0,
        &format!("报告医生 Author: {}    审核医生 Signed by: {}    签发时间 Signed: {}", r.author, r.signer.as_deref().unwrap_or(""), fmt_time(r.signed_at)),
    );
    w.finish()
}

/// `GET /api/reports/{id}/pdf`
pub async fn report_pdf_route(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Response> {
    let r = readable_report(&st, &caller, id).await?;
    let ecg = crate::ecg_analysis::report_ecg(&st, &r).await?;
    // subsetting a CJK font takes some CPU: keep it off the async workers
    let pdf = tokio::task::spawn_blocking(move || report_pdf(&r, ecg.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(format!("PDF task: {e}")))??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (header::CONTENT_DISPOSITION, format!("inline; filename=\"report-{id}.pdf\"")),
        ],
        pdf,
    )
        .into_response())
}
