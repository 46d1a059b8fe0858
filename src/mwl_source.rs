//! The modality worklist as the DICOM gateway sees it: the worklist's open orders, made
//! into the gateway's plain entries (the gateway does not depend on the worklist).

use std::future::Future;
use std::pin::Pin;

use dicom_gateway::mwl::{MwlEntry, MwlQuery, WorklistSource};
use readhub_types::SiteId;
use worklist::orders::{Order, WorklistQuery};
use worklist::{Priority, Worklist};

#[derive(Debug, Clone)]
pub struct Orders(pub Worklist);

fn entry(o: Order) -> MwlEntry {
    MwlEntry {
        patient_name: o.patient.name,
        patient_id: o.patient.id,
        issuer_of_patient_id: o.patient.issuer,
        birth_date: o.patient.birth_date,
        sex: o.patient.sex,
        requested_procedure_id: o.accession_number.clone(),
        step_id: o.accession_number.clone(),
        accession_number: o.accession_number,
        study_uid: o.study_uid,
        requested_procedure_description: o.procedure_description,
        procedure_code: o.procedure_code,
        priority: match o.priority {
            Priority::Stat => "STAT",
            Priority::Urgent => "HIGH",
            Priority::Routine => "ROUTINE",
        }
        .into(),
        requesting_physician: o.requesting_physician,
        requesting_service: o.requesting_department,
        clinical_history: o.clinical_history,
        reason: o.clinical_question.chars().take(64).collect(),
        modality: o.modality,
        station_ae: o.scheduled_station_ae,
        start_date: o.scheduled_date,
        start_time: o.scheduled_time,
    }
}

impl WorklistSource for Orders {
    fn modality_worklist(&self, site: SiteId, q: MwlQuery) -> Pin<Box<dyn Future<Output = Result<Vec<MwlEntry>, String>> + Send + '_>> {
        Box::pin(async move {
            let query = WorklistQuery {
                scheduled_date: q.scheduled_date,
                modality: q.modality,
                station_ae: q.station_ae,
                patient_id: q.patient_id,
                patient_name: q.patient_name,
                accession_number: q.accession_number,
                // one more than is sent, so the gateway can tell a query matched too many
                limit: dicom_gateway::mwl::MAX_ANSWERS + 1,
            };
            let orders = self.0.modality_worklist(site, &query).await.map_err(|e| e.to_string())?;
            Ok(orders.into_iter().map(entry).collect())
        })
    }

    fn pool_scope(&self, pool: readhub_types::PoolId) -> storage::query::StudyFilter {
        worklist::Scope::Pool(pool).study_filter()
    }
}
