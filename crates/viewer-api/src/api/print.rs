//! The printable report page (A4, site header), for referrers.

use axum::extract::Path;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use dicom_media::escape::esc;
use super::readable_report;

pub fn fmt_time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The print page's stylesheet, inline so the page prints on its own; the page's
/// Content-Security-Policy allows exactly this style block by its hash.
const PRINT_STYLE: &str = r#"@page { size: A4; margin: 18mm 16mm; }
body { font-family: "Noto Sans CJK SC", "Noto Sans", sans-serif; font-size: 11pt; color: #000; max-width: 178mm; margin: auto; }
h1 { font-size: 16pt; text-align: center; margin: 0 0 2mm; }
.sub { text-align: center; margin-bottom: 6mm; }
table.meta { width: 100%; border-collapse: collapse; margin-bottom: 5mm; }
table.meta td { border-bottom: 0.3mm solid #999; padding: 1.5mm 1mm; }
h2 { font-size: 12pt; border-left: 1.2mm solid #333; padding-left: 2mm; margin: 5mm 0 2mm; }
.text { white-space: pre-wrap; line-height: 1.6; }
.sign { margin-top: 10mm; text-align: right; }
.measures span { margin-right: 4mm; }
svg.strip { display: block; margin: 2mm 0; }
@media screen { body { padding: 10mm; box-shadow: 0 0 4mm #ccc; } }
"#;

/// `style-src 'sha256-…'` for [`PRINT_STYLE`], computed once (over the exact text of the
/// style element: nothing may stand between `<style>` and the constant).
static PRINT_CSP: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(PRINT_STYLE.as_bytes()));
    let policy = crate::CONTENT_SECURITY_POLICY.replace("style-src 'self'", &format!("style-src 'self' 'sha256-{hash}'"));
    HeaderValue::from_str(&policy).expect("a valid header value")
});

/// An ECG's key measurements and its rhythm strip, as HTML with an inline SVG (millimetres:
/// 25 mm/s, 10 mm/mV, the 1 and 5 mm grid).
fn ecg_block(e: &crate::ecg_analysis::ReportEcg) -> String {
    use std::fmt::Write as _;
    let (w, h) = (crate::ecg_analysis::STRIP_SECONDS * 25.0, 30.0);
    let mut svg = format!(r##"<svg class="strip" id="rhythm-strip" xmlns="http://www.w3.org/2000/svg" width="{w}mm" height="{h}mm" viewBox="0 0 {w} {h}">"##);
    for k in 0..=(w as usize) {
        let (c, sw) = if k % 5 == 0 { ("#e07a7a", 0.2) } else { ("#f6c8c8", 0.08) };
        let _ = write!(svg, r#"<path d="M{k} 0V{h}" stroke="{c}" stroke-width="{sw}"/>"#);
    }
    for k in 0..=(h as usize) {
        let (c, sw) = if k % 5 == 0 { ("#e07a7a", 0.2) } else { ("#f6c8c8", 0.08) };
        let _ = write!(svg, r#"<path d="M0 {k}H{w}" stroke="{c}" stroke-width="{sw}"/>"#);
    }
    let n = ((crate::ecg_analysis::STRIP_SECONDS * e.sampling_frequency) as usize).min(e.strip.len());
    let mut sorted: Vec<f32> = e.strip[..n].to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.get(n / 2).copied().unwrap_or(0.0) as f64;
    let mut d = String::with_capacity(n * 12);
    for (k, v) in e.strip[..n].iter().enumerate() {
        let x = k as f64 / e.sampling_frequency * 25.0;
        let y = (h / 2.0 - (*v as f64 - mid) / 1000.0 * 10.0).clamp(0.0, h);
        let _ = write!(d, "{}{x:.2} {y:.2}", if k == 0 { "M" } else { "L" });
    }
    let _ = write!(svg, r#"<path d="{d}" fill="none" stroke="black" stroke-width="0.25"/><text x="1.5" y="4" font-size="3">{} 25 mm/s 10 mm/mV</text></svg>"#, esc(&e.strip_lead));
    let measures: String = e.measures.iter().map(|(k, v)| format!("<span>{}: <b>{}</b></span> ", esc(k), esc(v))).collect();
    format!(r#"<h2>心电图测量 ECG measurements</h2><div class="measures" id="ecg-measures">{measures}</div>{svg}"#)
}

pub async fn report_page(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<impl IntoResponse> {
    let r = readable_report(&st, &caller, id).await?;
    let ecg = crate::ecg_analysis::report_ecg(&st, &r).await?;
    let name = r.patient_name.clone().unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>诊断报告 Report {id}</title>
<style>{style}</style></head>
<body>
<h1>{site} {title}</h1>
<div class="sub">Diagnostic report · 远程诊断中心 Remote reading hub</div>
<table class="meta">
<tr><td>姓名 Name: <b id="patient-name">{name}</b></td><td>患者ID Patient ID: {pid}</td><td>性别 Sex: {sex}</td></tr>
<tr><td>出生日期 Birth date: {birth}</td><td>检查日期 Study date: {date}</td><td>检查号 Accession: {acc}</td></tr>
<tr><td colspan="2">检查 Study: {desc}</td><td>设备 Modality: {modality}</td></tr>
</table>
{ecg_block}
<h2>{findings_title}</h2><div class="text" id="findings">{findings}</div>
<h2>{impression_title}</h2><div class="text" id="impression">{impression}</div>
<div class="sign">报告医生 Author: {author} &nbsp; 审核医生 Signed by: {signer}<br>签发时间 Signed: {signed}</div>
</body></html>
"#,
        style = PRINT_STYLE,
        title = if ecg.is_some() { "心电图诊断报告" } else { "影像诊断报告" },
        ecg_block = ecg.as_ref().map(ecg_block).unwrap_or_default(),
        findings_title = if ecg.is_some() { "心电图所见 ECG findings" } else { "检查所见 Findings" },
        impression_title = if ecg.is_some() { "心电图诊断 ECG diagnosis" } else { "诊断意见 Impression" },
        site = esc(&r.site_name),
        name = esc(&name),
        pid = esc(&r.patient_id),
        sex = esc(r.patient_sex.as_deref().unwrap_or("")),
        birth = esc(r.patient_birth_date.as_deref().unwrap_or("")),
        date = esc(r.study_date.as_deref().unwrap_or("")),
        acc = esc(r.accession_number.as_deref().unwrap_or("")),
        desc = esc(r.study_description.as_deref().unwrap_or("")),
        modality = esc(&r.modalities),
        findings = esc(&r.findings),
        impression = esc(&r.impression),
        author = esc(&r.author),
        signer = esc(r.signer.as_deref().unwrap_or("")),
        signed = fmt_time(r.signed_at),
    );
    Ok(([(header::CONTENT_SECURITY_POLICY, PRINT_CSP.clone())], Html(html)))
}
