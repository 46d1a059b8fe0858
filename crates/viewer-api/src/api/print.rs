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

pub async fn report_page(State(st): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<impl IntoResponse> {
    let r = readable_report(&st, &caller, id).await?;
    let name = r.patient_name.clone().unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>诊断报告 Report {id}</title>
<style>{style}</style></head>
<body>
<h1>{site} 影像诊断报告</h1>
<div class="sub">Diagnostic report · 远程诊断中心 Remote reading hub</div>
<table class="meta">
<tr><td>姓名 Name: <b id="patient-name">{name}</b></td><td>患者ID Patient ID: {pid}</td><td>性别 Sex: {sex}</td></tr>
<tr><td>出生日期 Birth date: {birth}</td><td>检查日期 Study date: {date}</td><td>检查号 Accession: {acc}</td></tr>
<tr><td colspan="2">检查 Study: {desc}</td><td>设备 Modality: {modality}</td></tr>
</table>
<h2>检查所见 Findings</h2><div class="text" id="findings">{findings}</div>
<h2>诊断意见 Impression</h2><div class="text" id="impression">{impression}</div>
<div class="sign">报告医生 Author: {author} &nbsp; 审核医生 Signed by: {signer}<br>签发时间 Signed: {signed}</div>
</body></html>
"#,
        style = PRINT_STYLE,
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
