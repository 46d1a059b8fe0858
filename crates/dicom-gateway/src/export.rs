//! Results back to a site's PACS: the signed report as a DICOM Encapsulated PDF in the
//! study it reports on (a new series, modality DOC), sent by C-STORE as an SCU. The SOP
//! Instance UID is derived from the report, so a retried delivery is the same instance, not
//! a second copy; a correction is a new instance in the same series.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::PDataValueType;
use dicom_ul::{ClientAssociationOptions, Pdu};

use crate::dimse;

/// What the Encapsulated PDF says about its patient, study and report.
#[derive(Debug, Clone, Default)]
pub struct ReportDocument {
    pub patient_name: String,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub birth_date: String,
    pub sex: String,
    pub study_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub study_description: String,
    /// the report's id and how many addenda it has (the instances' UIDs come from them: a
    /// retry is the same instance, a correction or an addendum a new one)
    pub report_id: i64,
    pub addenda: usize,
    pub version: i64,
    pub title: String,
    /// `YYYYMMDD`, `HHMMSS` of the signature, local time
    pub content_date: String,
    pub content_time: String,
    pub pdf: Vec<u8>,
}

/// A UID under 2.25 from a hash of its parts (PS3.5 B.2): the same report gives the same UID.
fn derived_uid(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut n = [0u8; 16];
    n.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(n))
}

/// The SOP Instance UID a report's PDF gets.
pub fn pdf_instance_uid(study_uid: &str, report_id: i64, addenda: usize) -> String {
    derived_uid(&["readhub report pdf", study_uid, &report_id.to_string(), &addenda.to_string()])
}

fn put(o: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

/// The Encapsulated PDF data set (PS3.3 A.45.1), in UTF-8 (ISO_IR 192).
pub fn encapsulated_pdf(d: &ReportDocument) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, uids::ENCAPSULATED_PDF_STORAGE);
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &pdf_instance_uid(&d.study_uid, d.report_id, d.addenda));
    put(&mut o, tags::STUDY_DATE, VR::DA, &d.study_date);
    put(&mut o, tags::STUDY_TIME, VR::TM, &d.study_time);
    put(&mut o, tags::ACCESSION_NUMBER, VR::SH, &d.accession_number);
    put(&mut o, tags::MODALITY, VR::CS, "DOC");
    put(&mut o, tags::CONVERSION_TYPE, VR::CS, "WSD");
    put(&mut o, tags::MANUFACTURER, VR::LO, "readhub");
    put(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, &d.referring_physician);
    put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, &d.study_description);
    put(&mut o, tags::SERIES_DESCRIPTION, VR::LO, "Report 诊断报告");
    put(&mut o, tags::PATIENT_NAME, VR::PN, &d.patient_name);
    put(&mut o, tags::PATIENT_ID, VR::LO, &d.patient_id);
    put(&mut o, tags::ISSUER_OF_PATIENT_ID, VR::LO, &d.issuer_of_patient_id);
    put(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, &d.birth_date);
    put(&mut o, tags::PATIENT_SEX, VR::CS, &d.sex);
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &d.study_uid);
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &derived_uid(&["readhub report series", &d.study_uid]));
    put(&mut o, tags::STUDY_ID, VR::SH, "");
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "999");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, &d.version.max(1).to_string());
    put(&mut o, tags::CONTENT_DATE, VR::DA, &d.content_date);
    put(&mut o, tags::CONTENT_TIME, VR::TM, &d.content_time);
    put(&mut o, tags::ACQUISITION_DATE_TIME, VR::DT, &format!("{}{}", d.content_date, d.content_time));
    put(&mut o, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    put(&mut o, tags::DOCUMENT_TITLE, VR::ST, &d.title);
    o.put(DataElement::new(tags::CONCEPT_NAME_CODE_SEQUENCE, VR::SQ, dicom_core::value::DataSetSequence::<InMemDicomObject>::empty()));
    put(&mut o, tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT, VR::LO, "application/pdf");
    // OB of even length: a PDF of odd length gets one trailing NUL (PS3.3 C.24.2.1)
    let mut doc = d.pdf.clone();
    o.put(DataElement::new(tags::ENCAPSULATED_DOCUMENT_LENGTH, VR::UL, PrimitiveValue::from(doc.len() as u32)));
    if doc.len() % 2 == 1 {
        doc.push(0);
    }
    o.put(DataElement::new(tags::ENCAPSULATED_DOCUMENT, VR::OB, PrimitiveValue::from(doc)));
    o
}

/// The SOP Instance UID a report's Basic Text SR gets.
pub fn sr_instance_uid(study_uid: &str, report_id: i64, addenda: usize) -> String {
    derived_uid(&["readhub report sr", study_uid, &report_id.to_string(), &addenda.to_string()])
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    put(&mut c, tags::CODE_VALUE, VR::SH, value);
    put(&mut c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put(&mut c, tags::CODE_MEANING, VR::LO, meaning);
    c
}

fn seq(items: Vec<InMemDicomObject>) -> dicom_core::value::DataSetSequence<InMemDicomObject> {
    dicom_core::value::DataSetSequence::from(items)
}

/// The report as a Basic Text SR (PS3.3 A.35.1), beside the PDF: the same study, a
/// structured document a PACS or RIS can read without a PDF viewer. Findings and impression
/// are TEXT items under a Diagnostic Imaging Report container, verified by the signer.
pub fn basic_text_sr(d: &ReportDocument, findings: &str, impression: &str, signer: &str) -> InMemDicomObject {
    let mut o = encapsulated_pdf(&ReportDocument { pdf: Vec::new(), ..d.clone() });
    for t in [tags::ENCAPSULATED_DOCUMENT, tags::ENCAPSULATED_DOCUMENT_LENGTH, tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT, tags::DOCUMENT_TITLE,
        tags::BURNED_IN_ANNOTATION, tags::CONVERSION_TYPE, tags::CONCEPT_NAME_CODE_SEQUENCE, tags::ACQUISITION_DATE_TIME] {
        o.remove_element(t);
    }
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, uids::BASIC_TEXT_SR_STORAGE);
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sr_instance_uid(&d.study_uid, d.report_id, d.addenda));
    put(&mut o, tags::MODALITY, VR::CS, "SR");
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &derived_uid(&["readhub report sr series", &d.study_uid]));
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "998");
    put(&mut o, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put(&mut o, tags::VERIFICATION_FLAG, VR::CS, "VERIFIED");
    let mut observer = InMemDicomObject::new_empty();
    put(&mut observer, tags::VERIFYING_OBSERVER_NAME, VR::PN, signer);
    put(&mut observer, tags::VERIFYING_ORGANIZATION, VR::LO, "readhub");
    put(&mut observer, tags::VERIFICATION_DATE_TIME, VR::DT, &format!("{}{}", d.content_date, d.content_time));
    observer.put(DataElement::new(tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE, VR::SQ, seq(vec![])));
    o.put(DataElement::new(tags::VERIFYING_OBSERVER_SEQUENCE, VR::SQ, seq(vec![observer])));
    o.put(DataElement::new(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, VR::SQ, seq(vec![])));
    o.put(DataElement::new(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, VR::SQ, seq(vec![])));
    put(&mut o, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put(&mut o, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    o.put(DataElement::new(tags::CONCEPT_NAME_CODE_SEQUENCE, VR::SQ, seq(vec![code("18748-4", "LN", "Diagnostic Imaging Report")])));
    let text = |concept: InMemDicomObject, value: &str| {
        let mut item = InMemDicomObject::new_empty();
        put(&mut item, tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS");
        put(&mut item, tags::VALUE_TYPE, VR::CS, "TEXT");
        item.put(DataElement::new(tags::CONCEPT_NAME_CODE_SEQUENCE, VR::SQ, seq(vec![concept])));
        put(&mut item, tags::TEXT_VALUE, VR::UT, value);
        item
    };
    let mut items = Vec::new();
    if !findings.trim().is_empty() {
        items.push(text(code("121071", "DCM", "Finding"), findings.trim()));
    }
    items.push(text(code("121073", "DCM", "Impression"), impression.trim()));
    o.put(DataElement::new(tags::CONTENT_SEQUENCE, VR::SQ, seq(items)));
    o
}

/// Where an instance goes.
#[derive(Debug, Clone)]
pub struct StoreDestination {
    pub calling_ae: String,
    pub called_ae: String,
    pub host: String,
    pub port: u16,
}

/// C-STORE one data set to a destination as an SCU (explicit VR little endian). Ok when it
/// answered Success (or a warning); Err with its status or why it could not be reached.
pub async fn c_store(dest: &StoreDestination, sop_class: &str, sop_instance: &str, data_set: &InMemDicomObject, timeout: Duration) -> Result<(), String> {
    let mut data = Vec::with_capacity(64 * 1024);
    data_set.write_dataset_with_ts(&mut data, &EXPLICIT_VR_LITTLE_ENDIAN.erased()).map_err(|e| format!("the data set cannot be written: {e}"))?;
    let work = async {
        let options = ClientAssociationOptions::new()
            .calling_ae_title(dest.calling_ae.clone())
            .called_ae_title(dest.called_ae.clone())
            .with_presentation_context(sop_class.to_string(), vec![uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string()])
            .read_timeout(timeout)
            .write_timeout(timeout);
        let mut assoc = options
            .establish_async((dest.host.as_str(), dest.port))
            .await
            .map_err(|e| format!("association with {}@{}:{} refused or failed: {e}", dest.called_ae, dest.host, dest.port))?;
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
            .map(|pc| pc.id)
            .ok_or_else(|| format!("{} does not accept {sop_class} in explicit VR little endian", dest.called_ae))?;
        let command = dimse::store_request(1, sop_class, sop_instance);
        let max = {
            use dicom_ul::association::Association;
            assoc.peer_max_pdu_length()
        };
        let pdus = dimse::message_pdus(pc, command, Some(&data), max);
        for p in &pdus {
            assoc.send(p).await.map_err(|e| format!("sending to {}: {e}", dest.called_ae))?;
        }
        let status = loop {
            match assoc.receive().await.map_err(|e| format!("no C-STORE response from {}: {e}", dest.called_ae))? {
                Pdu::PData { data } => {
                    if let Some(v) = data.iter().find(|v| v.value_type == PDataValueType::Command && v.is_last) {
                        let rsp = dimse::parse_command(&v.data)?;
                        break rsp.status.unwrap_or(0xFFFF);
                    }
                }
                other => return Err(format!("{} answered {other:?} instead of a C-STORE response", dest.called_ae)),
            }
        };
        let _ = assoc.release().await;
        // success, or a warning (coercion, elements discarded): stored
        if status == 0x0000 || (status & 0xF000) == 0xB000 {
            Ok(())
        } else {
            Err(format!("{} refused the instance with status {status:#06X}", dest.called_ae))
        }
    };
    tokio::time::timeout(timeout * 2, work).await.map_err(|_| format!("{}: no answer within {:?}", dest.called_ae, timeout * 2))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_pdf_is_an_encapsulated_pdf_in_its_study() {
        let d = ReportDocument { study_uid: "1.2.3".into(), report_id: 7, pdf: b"%PDF-1.7 x".to_vec(), patient_name: "张^三".into(), ..Default::default() };
        let o = encapsulated_pdf(&d);
        let s = |t| o.element(t).unwrap().to_str().unwrap().trim_end_matches('\0').to_string();
        assert_eq!(s(tags::SOP_CLASS_UID), uids::ENCAPSULATED_PDF_STORAGE);
        assert_eq!(s(tags::STUDY_INSTANCE_UID), "1.2.3");
        assert_eq!(s(tags::SOP_INSTANCE_UID), pdf_instance_uid("1.2.3", 7, 0), "a retry is the same instance");
        assert_ne!(pdf_instance_uid("1.2.3", 7, 0), pdf_instance_uid("1.2.3", 8, 0), "a correction is another");
        assert_ne!(pdf_instance_uid("1.2.3", 7, 0), pdf_instance_uid("1.2.3", 7, 1), "so is an addendum");
        assert_eq!(o.element(tags::ENCAPSULATED_DOCUMENT_LENGTH).unwrap().to_int::<u32>().unwrap(), 10);
        assert_eq!(o.element(tags::ENCAPSULATED_DOCUMENT).unwrap().to_bytes().unwrap().len(), 10);
    }
}
