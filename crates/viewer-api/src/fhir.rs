//! FHIR R4: a signed report as a DiagnosticReport (the PDF as `presentedForm`, the study
//! as an ImagingStudy reference by its DICOM UID, the order as a ServiceRequest reference by
//! its accession number), pushed to a site's FHIR server. The resource is written here as
//! JSON from the R4 specification rather than through a generated model crate (fhir-model
//! offers R4B/R5 only, and costs 1.5 minutes and 3.3 GB of memory to compile for the three
//! resources readhub writes); the tests validate every resource with the `fhir.resources`
//! models (Python, an independent implementation).

use base64::Engine;
use serde_json::{json, Value};
use worklist::orders::Order;
use worklist::reports::Report;
use worklist::results::ResultEvent;


/// The logical id of an item's DiagnosticReport: one resource per study read, updated by a
/// correction or an addendum (its status says which).
pub fn report_resource_id(r: &Report) -> String {
    format!("readhub-{}", r.item_id)
}

/// An R4 instant (UTC, with seconds) of a unix-ms time.
fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A DICOM date (YYYYMMDD) as an R4 date, if it is one.
fn date(d: Option<&str>) -> Option<String> {
    let d = d?.trim();
    (d.len() == 8 && d.chars().all(|c| c.is_ascii_digit())).then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
}

/// The DiagnosticReport of a report event.
pub fn diagnostic_report(r: &Report, order: Option<&Order>, issuer: &str, event: ResultEvent, pdf: &[u8]) -> Value {
    let is_ecg = r.modalities.split('\\').any(|m| m == "ECG");
    let status = match event {
        ResultEvent::Signed if r.supersedes.is_some() => "corrected",
        ResultEvent::Signed => "final",
        ResultEvent::Corrected => "corrected",
        ResultEvent::Addended => "appended",
    };
    let (code, display) = if is_ecg { ("11524-6", "EKG study") } else { ("18748-4", "Diagnostic imaging study") };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut text = String::new();
    if !r.findings.trim().is_empty() {
        text.push_str(&format!("影像所见 Findings:\n{}\n\n", r.findings.trim()));
    }
    text.push_str(&format!("诊断意见 Impression:\n{}\n", r.impression.trim()));
    for a in &r.addenda {
        text.push_str(&format!("\n补充 Addendum ({}):\n{}\n", a.author, a.text));
    }
    let issuer = order.map(|o| o.patient.issuer.as_str()).filter(|s| !s.is_empty()).unwrap_or(issuer);
    let mut dr = json!({
        "resourceType": "DiagnosticReport",
        "id": report_resource_id(r),
        "identifier": [{ "system": "urn:readhub:report", "value": r.id.to_string() }],
        "status": status,
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": if is_ecg { "EC" } else { "RAD" } }] }],
        "code": {
            "coding": [{ "system": "http://loinc.org", "code": code, "display": display }],
            "text": order.map(|o| o.procedure_description.clone()).filter(|s| !s.is_empty())
                .or_else(|| r.study_description.clone()).unwrap_or_else(|| r.modalities.clone()),
        },
        "subject": {
            "identifier": { "system": format!("urn:readhub:issuer:{issuer}"), "value": r.patient_id },
            "display": r.patient_name.clone().unwrap_or_default().replace('^', " "),
        },
        "imagingStudy": [{ "type": "ImagingStudy", "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{}", r.study_instance_uid) } }],
        "conclusion": r.impression,
        "presentedForm": [
            { "contentType": "application/pdf", "language": "zh-CN", "title": format!("诊断报告 {}", r.accession_number.clone().unwrap_or_default()), "data": b64.encode(pdf) },
            { "contentType": "text/plain; charset=utf-8", "language": "zh-CN", "data": b64.encode(text.as_bytes()) },
        ],
    });
    if let Some(signed) = r.signed_at {
        dr["issued"] = json!(instant(signed));
    }
    if let Some(d) = date(r.study_date.as_deref()) {
        dr["effectiveDateTime"] = json!(d);
    }
    let mut interpreters = Vec::new();
    if let Some(s) = &r.signer {
        interpreters.push(json!({ "display": s }));
    }
    if r.signer.as_deref() != Some(r.author.as_str()) {
        interpreters.push(json!({ "display": r.author }));
    }
    dr["resultsInterpreter"] = json!(interpreters);
    let accession = order.map(|o| o.accession_number.clone()).or_else(|| r.accession_number.clone()).filter(|a| !a.is_empty());
    if let Some(acc) = accession {
        dr["basedOn"] = json!([{
            "type": "ServiceRequest",
            "identifier": {
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
                "system": format!("urn:readhub:accession:{}", r.site_name),
                "value": acc,
            },
        }]);
    }
    dr
}

