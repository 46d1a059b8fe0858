//! Delivers the results outbox: each signed, corrected or amended report to its site's HIS
//! (HL7 ORU^R01 over MLLP), FHIR server (DiagnosticReport, PUT) and PACS (Encapsulated PDF
//! by C-STORE). A node takes a due delivery with a lease, so with several nodes each goes
//! out once; a failure is retried with backoff and shown to the admins.

use std::time::Duration;

use viewer_api::AppState;
use worklist::results::{Channel, ResultDelivery};

/// How long one attempt may take (a HIS that accepts the connection and never answers).
const ATTEMPT: Duration = Duration::from_secs(20);

/// Who readhub is to the sites' systems.
#[derive(Debug, Clone)]
pub struct Sender {
    pub node: String,
    pub ae_title: String,
    pub utc_offset_hours: i32,
}

async fn deliver(st: &AppState, http: &reqwest::Client, me: &Sender, d: &ResultDelivery) -> Result<(), String> {
    let wl = &st.worklist;
    let report = wl.report(d.report_id).await.map_err(|e| e.to_string())?;
    let order = wl.order_of_item(d.item_id).await.map_err(|e| e.to_string())?;
    let site = storage::sites::get_site(&st.storage.db, d.site_id).await.map_err(|e| e.to_string())?.ok_or("the site is gone")?;
    let outbound = wl.site_outbound(d.site_id).await.map_err(|e| e.to_string())?;
    match d.channel {
        Channel::Hl7 => {
            let addr = outbound.hl7.ok_or("the site no longer has an HL7 destination")?;
            let us = hl7::Us { application: "READHUB".into(), facility: me.ae_title.clone(), utc_offset_hours: me.utc_offset_hours };
            let (app, fac) = storage::sites::hl7_senders_of(&st.storage.db, site.id)
                .await
                .map_err(|e| e.to_string())?
                .first()
                .map(|s| (s.application.clone(), s.facility.clone()))
                .unwrap_or_else(|| (site.name.clone(), String::new()));
            let bytes = hl7::results::oru(&us, &app, &fac, &report, order.as_ref(), &site.issuer, &format!("RH{}", d.id), wl.now());
            hl7::results::send(&addr, &bytes, ATTEMPT).await
        }
        Channel::Fhir => {
            let base = outbound.fhir.ok_or("the site no longer has a FHIR destination")?;
            let pdf = viewer_api::report_pdf(st, &report).await.map_err(|e| e.to_string())?;
            let dr = viewer_api::fhir::diagnostic_report(&report, order.as_ref(), &site.issuer, d.event, &pdf);
            let url = format!("{}/DiagnosticReport/{}", base.trim_end_matches('/'), viewer_api::fhir::report_resource_id(&report));
            let rsp = http
                .put(&url)
                .header("content-type", "application/fhir+json")
                .body(dr.to_string())
                .send()
                .await
                .map_err(|e| format!("PUT {url}: {e}"))?;
            if rsp.status().is_success() {
                Ok(())
            } else {
                let status = rsp.status();
                let body: String = rsp.text().await.unwrap_or_default().chars().take(300).collect();
                Err(format!("PUT {url}: HTTP {status}: {body}"))
            }
        }
        Channel::Pacs => {
            let pacs = outbound.pacs.ok_or("the site no longer has a PACS destination")?;
            let pdf = viewer_api::report_pdf(st, &report).await.map_err(|e| e.to_string())?;
            let study = storage::query::search_studies(
                &st.storage.db,
                storage::query::StudyFilter::Site(site.id),
                &storage::query::StudyQuery { study_uids: vec![report.study_instance_uid.clone()], ..Default::default() },
            )
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next();
            let signed = report.signed_at.unwrap_or_else(|| wl.now());
            let local = chrono::DateTime::from_timestamp_millis(signed + i64::from(me.utc_offset_hours) * 3_600_000).unwrap_or_default();
            let doc = dicom_gateway::export::ReportDocument {
                patient_name: report.patient_name.clone().unwrap_or_default(),
                patient_id: report.patient_id.clone(),
                issuer_of_patient_id: study.as_ref().map(|s| s.issuer_of_patient_id.clone()).unwrap_or_default(),
                birth_date: report.patient_birth_date.clone().unwrap_or_default(),
                sex: report.patient_sex.clone().unwrap_or_default(),
                study_uid: report.study_instance_uid.clone(),
                study_date: report.study_date.clone().unwrap_or_default(),
                study_time: study.as_ref().and_then(|s| s.study_time.clone()).unwrap_or_default(),
                accession_number: report.accession_number.clone().unwrap_or_default(),
                referring_physician: study.as_ref().and_then(|s| s.referring_physician.clone()).unwrap_or_default(),
                study_description: report.study_description.clone().unwrap_or_default(),
                report_id: report.id,
                addenda: report.addenda.len(),
                version: report.version,
                title: if report.supersedes.is_some() { "诊断报告（更正） Corrected report".into() } else { "诊断报告 Report".into() },
                content_date: local.format("%Y%m%d").to_string(),
                content_time: local.format("%H%M%S").to_string(),
                pdf,
            };
            let dest = dicom_gateway::export::StoreDestination {
                calling_ae: me.ae_title.clone(),
                called_ae: pacs.ae_title.clone(),
                host: pacs.host.clone(),
                port: pacs.port,
            };
            // the PDF (what the site prints) and a Basic Text SR (what a RIS reads); a retry
            // sends both again under the same UIDs, so a PACS keeps one of each
            let pdf = dicom_gateway::export::encapsulated_pdf(&doc);
            let sop = dicom_gateway::export::pdf_instance_uid(&doc.study_uid, doc.report_id, doc.addenda);
            dicom_gateway::export::c_store(&dest, dicom_dictionary_std::uids::ENCAPSULATED_PDF_STORAGE, &sop, &pdf, ATTEMPT).await?;
            let mut impression = report.impression.clone();
            for a in &report.addenda {
                impression.push_str(&format!("\n补充 Addendum ({}): {}", a.author, a.text));
            }
            let signer = report.signer.clone().unwrap_or_else(|| report.author.clone());
            let sr = dicom_gateway::export::basic_text_sr(&doc, &report.findings, &impression, &signer);
            let sop = dicom_gateway::export::sr_instance_uid(&doc.study_uid, doc.report_id, doc.addenda);
            dicom_gateway::export::c_store(&dest, dicom_dictionary_std::uids::BASIC_TEXT_SR_STORAGE, &sop, &sr, ATTEMPT).await
        }
    }
}

/// Deliver what is due, once. Returns how many were attempted.
pub async fn deliver_due(st: &AppState, http: &reqwest::Client, me: &Sender) -> Result<usize, worklist::Error> {
    let due = st.worklist.take_due_results(&me.node, 10).await?;
    for d in &due {
        let span = tracing::info_span!("result", delivery = d.id, channel = d.channel.as_str(), destination = %d.destination, report = d.report_id);
        let outcome = tracing::Instrument::instrument(deliver(st, http, me, d), span.clone()).await;
        let _e = span.enter();
        match &outcome {
            Ok(()) => tracing::info!(event = d.event.as_str(), "report delivered"),
            Err(e) => tracing::warn!(attempts = d.attempts + 1, error = %e, "report delivery failed; will retry"),
        }
        st.worklist.record_result(d.id, outcome).await?;
    }
    Ok(due.len())
}

/// The delivery loop, until `stop` turns true.
pub async fn run(st: AppState, me: Sender, mut stop: tokio::sync::watch::Receiver<bool>) {
    let http = reqwest::Client::builder().timeout(ATTEMPT).build().expect("HTTP client");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = deliver_due(&st, &http, &me).await {
                    tracing::warn!(error = %e, "results outbox failed");
                }
            }
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
}
