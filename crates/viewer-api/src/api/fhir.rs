//! FHIR R4 over HTTP (`/fhir`, JSON): orders in as `ServiceRequest` (its Patient contained,
//! or referenced: readhub's own `Patient/{id}`, or by identifier), and the reports out as
//! `DiagnosticReport` searches by patient, with the `Patient` resources readhub serves. The
//! same accounts and scoping as the JSON API: a site's staff see and order for their site,
//! admins everything (naming the site to order for). Errors are OperationOutcomes.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use worklist::orders::{NewOrder, OrderPatient};
use worklist::{Priority, Role, Scope};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

const FHIR_JSON: &str = "application/fhir+json";

/// An OperationOutcome with its HTTP status.
pub struct Outcome(StatusCode, &'static str, String);

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let body = json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": self.1, "diagnostics": self.2 }],
        });
        (self.0, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
    }
}

impl From<ApiError> for Outcome {
    fn from(e: ApiError) -> Self {
        let (status, code) = match &e {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "login"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "duplicate"),
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
        };
        let text = match e {
            ApiError::Internal(d) => {
                tracing::error!(error = %d, "internal error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        Outcome(status, code, text)
    }
}

impl From<worklist::Error> for Outcome {
    fn from(e: worklist::Error) -> Self {
        Outcome::from(ApiError::from(e))
    }
}

impl From<storage::Error> for Outcome {
    fn from(e: storage::Error) -> Self {
        Outcome::from(ApiError::from(e))
    }
}

fn invalid(text: impl Into<String>) -> Outcome {
    Outcome(StatusCode::BAD_REQUEST, "invalid", text.into())
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The system of a patient identifier readhub writes: `urn:readhub:issuer:{issuer}`.
const ISSUER_SYSTEM: &str = "urn:readhub:issuer:";

/// A FHIR HumanName list as a DICOM PN: an ASCII name as the alphabetic group, a Chinese one
/// as the ideographic group (only Chinese: the first group, as modalities in China show it).
fn person_name(names: Option<&Value>) -> String {
    let mut groups: Vec<String> = Vec::new();
    for n in names.and_then(Value::as_array).into_iter().flatten() {
        let family = s(n, "family").unwrap_or("");
        let given: Vec<&str> = n.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let g = if family.is_empty() && given.is_empty() {
            s(n, "text").unwrap_or("").to_string()
        } else if given.is_empty() {
            family.to_string()
        } else {
            format!("{family}^{}", given.join(" "))
        };
        if !g.is_empty() {
            groups.push(g);
        }
    }
    readhub_types::pn::from_groups(groups)
}

fn patient_of(p: &Value, at: &str) -> Result<OrderPatient, Outcome> {
    if s(p, "resourceType") != Some("Patient") {
        return Err(invalid(format!("{at}: a Patient resource is expected")));
    }
    let ids = p.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
    let id = ids.iter().find(|i| s(i, "value").is_some()).ok_or_else(|| invalid(format!("{at}.identifier: the patient needs an identifier (the Patient ID)")))?;
    let issuer = s(id, "system").map(|sys| sys.strip_prefix(ISSUER_SYSTEM).unwrap_or(sys).to_string()).unwrap_or_default();
    let sex = match s(p, "gender") {
        Some("male") => "M",
        Some("female") => "F",
        Some("other") => "O",
        None | Some("unknown") => "",
        Some(g) => return Err(invalid(format!("{at}.gender {g:?}: male, female, other or unknown"))),
    };
    let birth = match s(p, "birthDate") {
        None => String::new(),
        Some(b) if b.len() == 10 && b.as_bytes()[4] == b'-' && b.as_bytes()[7] == b'-' => b.replace('-', ""),
        Some(b) => return Err(invalid(format!("{at}.birthDate {b:?}: YYYY-MM-DD"))),
    };
    Ok(OrderPatient { id: s(id, "value").unwrap_or("").to_string(), issuer, name: person_name(p.get("name")), birth_date: birth, sex: sex.into() })
}

/// The codings of a CodeableConcept (or a list of them).
fn codings(v: Option<&Value>) -> Vec<&Value> {
    fn one(c: &Value) -> Vec<&Value> {
        c.get("coding").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
    }
    match v {
        Some(Value::Array(a)) => a.iter().flat_map(one).collect(),
        Some(c) => one(c),
        None => Vec::new(),
    }
}

fn concept_text(v: Option<&Value>) -> String {
    let all: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(c) => vec![c],
        None => vec![],
    };
    all.iter()
        .filter_map(|c| s(c, "text").map(String::from).or_else(|| codings(Some(c)).first().and_then(|k| s(k, "display").or(s(k, "code")).map(String::from))))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The modality of an order: a DICOM (DCM) code in `code`, `category` or `orderDetail`.
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

async fn resolve_patient(st: &AppState, sr: &Value, scope: Scope) -> Result<OrderPatient, Outcome> {
    let subject = sr.get("subject").ok_or_else(|| invalid("ServiceRequest.subject is required (R4): the patient"))?;
    if let Some(r) = s(subject, "reference") {
        if let Some(local) = r.strip_prefix('#') {
            let contained = sr.get("contained").and_then(Value::as_array).into_iter().flatten().find(|c| s(c, "id") == Some(local));
            return patient_of(contained.ok_or_else(|| invalid(format!("ServiceRequest.subject {r:?}: no contained resource with that id")))?, "ServiceRequest.contained");
        }
        if let Some(id) = r.strip_prefix("Patient/") {
            let pk: i64 = id.parse().map_err(|_| invalid(format!("ServiceRequest.subject {r:?}: not a Patient readhub serves")))?;
            return Ok(served_patient(st, pk, scope).await?.0);
        }
        return Err(invalid(format!("ServiceRequest.subject {r:?}: contain the Patient (#id), or reference Patient/{{id}} from readhub")));
    }
    if let Some(id) = subject.get("identifier") {
        let value = s(id, "value").ok_or_else(|| invalid("ServiceRequest.subject.identifier.value is required"))?;
        let issuer = s(id, "system").map(|sys| sys.strip_prefix(ISSUER_SYSTEM).unwrap_or(sys).to_string()).unwrap_or_default();
        return Ok(OrderPatient { id: value.into(), issuer, name: s(subject, "display").unwrap_or("").replace(' ', "^"), ..Default::default() });
    }
    Err(invalid("ServiceRequest.subject: a reference or an identifier is required"))
}

/// Read a ServiceRequest (R4) into an order; what is missing or wrong is named.
async fn order_of(st: &AppState, sr: &Value, scope: Scope) -> Result<NewOrder, Outcome> {
    if s(sr, "resourceType") != Some("ServiceRequest") {
        return Err(invalid("the body must be a ServiceRequest resource (resourceType)"));
    }
    match s(sr, "status") {
        Some("active" | "draft" | "on-hold") => {}
        Some(other) => return Err(Outcome(StatusCode::UNPROCESSABLE_ENTITY, "business-rule", format!("ServiceRequest.status {other:?}: readhub takes active orders"))),
        None => return Err(invalid("ServiceRequest.status is required (R4)")),
    }
    if s(sr, "intent").is_none() {
        return Err(invalid("ServiceRequest.intent is required (R4)"));
    }
    let ids = sr.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
    let typed = |code: &str| {
        ids.iter()
            .find(|i| codings(i.get("type")).iter().any(|c| s(c, "code") == Some(code)) || s(i, "system").is_some_and(|sys| sys.to_ascii_lowercase().contains(&code.to_ascii_lowercase())))
            .and_then(|i| s(i, "value"))
            .map(String::from)
    };
    let accession = typed("ACSN").or_else(|| typed("accession")).ok_or_else(|| {
        invalid("ServiceRequest.identifier: the accession number is required (an identifier of type ACSN, http://terminology.hl7.org/CodeSystem/v2-0203)")
    })?;
    let modality = [sr.get("code"), sr.get("category"), sr.get("orderDetail")]
        .into_iter()
        .flat_map(codings)
        .find(|c| s(c, "system") == Some(DCM))
        .and_then(|c| s(c, "code"))
        .map(String::from)
        .ok_or_else(|| invalid(format!("ServiceRequest.code (or category, orderDetail): the modality is required as a DICOM code ({DCM}, e.g. DX, CT, ECG)")))?;
    let procedure = codings(sr.get("code")).into_iter().find(|c| s(c, "system") != Some(DCM)).cloned();
    let priority = match s(sr, "priority") {
        None | Some("routine") => Priority::Routine,
        Some("urgent" | "asap") => Priority::Urgent,
        Some("stat") => Priority::Stat,
        Some(p) => return Err(invalid(format!("ServiceRequest.priority {p:?}: routine, urgent, asap or stat"))),
    };
    let scheduled_at = match s(sr, "occurrenceDateTime") {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| invalid(format!("ServiceRequest.occurrenceDateTime {t:?}: a dateTime with its zone (e.g. 2026-12-02T10:00:00+08:00)")))?
                .timestamp_millis(),
        ),
    };
    let notes: Vec<String> = sr.get("note").and_then(Value::as_array).into_iter().flatten().filter_map(|n| s(n, "text").map(String::from)).collect();
    Ok(NewOrder {
        accession_number: accession,
        placer_order_number: typed("PLAC").unwrap_or_default(),
        filler_order_number: typed("FILL").unwrap_or_default(),
        patient: resolve_patient(st, sr, scope).await?,
        modality,
        procedure_code: procedure.as_ref().and_then(|c| s(c, "code")).unwrap_or("").chars().take(16).collect(),
        procedure_description: procedure.as_ref().and_then(|c| s(c, "display")).map(String::from).or_else(|| sr.get("code").and_then(|c| s(c, "text")).map(String::from)).unwrap_or_default(),
        priority,
        requesting_physician: sr.get("requester").and_then(|r| s(r, "display")).unwrap_or("").replace(' ', "^"),
        requesting_department: String::new(),
        clinical_history: notes.join("\n"),
        clinical_question: concept_text(sr.get("reasonCode")),
        scheduled_at,
        scheduled_station_ae: String::new(),
        study_uid: None,
    })
}

#[derive(Deserialize)]
pub struct SiteQuery {
    site: Option<String>,
}

/// `POST /fhir/ServiceRequest[?site=NAME]`: an order from a site's system (its technicians'
/// or doctors' accounts; an admin names the site). 201 with the resource and its Location.
pub async fn create_service_request(State(st): State<AppState>, caller: Caller, Query(q): Query<SiteQuery>, body: axum::body::Bytes) -> Result<Response, Outcome> {
    let site = match (caller.0.role, caller.scope(), &q.site) {
        (Role::Technician | Role::Referrer, Scope::Site(id), _) => storage::sites::get_site(&st.storage.db, id).await?,
        (Role::Admin, Scope::All, Some(name)) => storage::sites::site_by_name(&st.storage.db, name).await?,
        (Role::Admin, Scope::All, None) => return Err(invalid("an admin orders for a site: add ?site=NAME")),
        _ => return Err(Outcome(StatusCode::FORBIDDEN, "forbidden", "orders come from a site's accounts (or an admin naming the site)".into())),
    }
    .ok_or_else(|| Outcome(StatusCode::NOT_FOUND, "not-found", "site not found".into()))?;
    let sr: Value = serde_json::from_slice(&body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
    let order = order_of(&st, &sr, Scope::Site(site.id)).await?;
    let placed = st.worklist.place_order(site.id, order, &format!("fhir:{}", caller.0.username)).await?;
    let mut out = sr.clone();
    out["id"] = json!(placed.id.get().to_string());
    let mut resp = fhir(StatusCode::CREATED, out);
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("/fhir/ServiceRequest/{}", placed.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A patient row readhub serves as `Patient/{id}`, if the caller may see it.
async fn served_patient(st: &AppState, pk: i64, scope: Scope) -> Result<(OrderPatient, i64), Outcome> {
    let not_found = || Outcome(StatusCode::NOT_FOUND, "not-found", format!("Patient/{pk} not found"));
    if matches!(scope, Scope::Pool(_) | Scope::Nothing) {
        return Err(not_found());
    }
    let p = storage::query::patient(&st.storage.db, scope.study_filter(), pk).await?.ok_or_else(not_found)?;
    Ok((OrderPatient { id: p.patient_id, issuer: p.issuer, name: p.name, birth_date: p.birth_date, sex: p.sex }, p.site_id.get()))
}

fn patient_resource(pk: i64, p: &OrderPatient) -> Value {
    let names: Vec<Value> = p
        .name
        .split('=')
        .filter(|g| !g.is_empty())
        .map(|g| {
            let mut parts = g.split('^');
            let family = parts.next().unwrap_or("");
            let given: Vec<&str> = parts.filter(|x| !x.is_empty()).take(2).collect();
            json!({ "text": g.replace('^', " ").trim(), "family": family, "given": given })
        })
        .collect();
    let mut r = json!({
        "resourceType": "Patient",
        "id": pk.to_string(),
        "identifier": [{ "system": format!("{ISSUER_SYSTEM}{}", p.issuer), "value": p.id }],
        "name": names,
    });
    match p.sex.as_str() {
        "M" => r["gender"] = json!("male"),
        "F" => r["gender"] = json!("female"),
        "O" => r["gender"] = json!("other"),
        _ => {}
    }
    if p.birth_date.len() == 8 {
        r["birthDate"] = json!(format!("{}-{}-{}", &p.birth_date[..4], &p.birth_date[4..6], &p.birth_date[6..]));
    }
    r
}

/// `GET /fhir/Patient/{id}`
pub async fn read_patient(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, Outcome> {
    if matches!(caller.scope(), Scope::Pool(_)) {
        return Err(Outcome(StatusCode::FORBIDDEN, "forbidden", "readers find patients through their worklist items".into()));
    }
    let pk: i64 = id.parse().map_err(|_| Outcome(StatusCode::NOT_FOUND, "not-found", format!("Patient/{id} not found")))?;
    let (p, _) = served_patient(&st, pk, caller.scope()).await?;
    Ok(fhir(StatusCode::OK, patient_resource(pk, &p)))
}

#[derive(Deserialize)]
pub struct ReportSearchQuery {
    #[serde(rename = "patient.identifier")]
    patient_identifier: Option<String>,
    patient: Option<String>,
    #[serde(rename = "_count")]
    count: Option<i64>,
}

/// `GET /fhir/DiagnosticReport?patient.identifier=[system|]value` or `?patient=Patient/{id}`:
/// the final reports of a patient the caller may see, newest first, as a searchset Bundle;
/// the PDF as a link (`presentedForm.url`), fetched with the same credentials.
pub async fn search_diagnostic_reports(State(st): State<AppState>, caller: Caller, headers: HeaderMap, Query(q): Query<ReportSearchQuery>) -> Result<Response, Outcome> {
    let site = match caller.scope() {
        Scope::All => None,
        Scope::Site(s) => Some(s),
        Scope::Pool(_) => return Err(Outcome(StatusCode::FORBIDDEN, "forbidden", "readers find reports through their worklist items".into())),
        Scope::Nothing => return Err(Outcome(StatusCode::FORBIDDEN, "forbidden", "you belong to no site".into())),
    };
    let mut search = worklist::reports::ReportSearch { limit: q.count.unwrap_or(100).clamp(1, 500), ..Default::default() };
    match (&q.patient_identifier, &q.patient) {
        (Some(ident), _) => {
            let (system, value) = ident.split_once('|').map(|(a, b)| (Some(a), b)).unwrap_or((None, ident.as_str()));
            if value.trim().is_empty() {
                return Err(invalid("patient.identifier: give [system|]value"));
            }
            search.patient_id = Some(value.trim().to_string());
            search.issuer = system.filter(|s| !s.is_empty()).map(|s| s.strip_prefix(ISSUER_SYSTEM).unwrap_or(s).to_string());
        }
        (None, Some(p)) => {
            let id = p.strip_prefix("Patient/").unwrap_or(p);
            let pk: i64 = id.parse().map_err(|_| invalid(format!("patient {p:?}: Patient/{{id}}")))?;
            served_patient(&st, pk, caller.scope()).await?;
            search.patient_pk = Some(pk);
        }
        (None, None) => return Err(invalid("search DiagnosticReport by patient.identifier or patient")),
    }
    let reports = st.worklist.site_reports(site, &search).await?;
    let base = st.public_base(&headers);
    let mut entries = Vec::new();
    for r in &reports {
        let order = st.worklist.order_of_item(r.item_id).await?;
        let issuer = search.issuer.clone().unwrap_or_default();
        let mut dr = crate::fhir::diagnostic_report(r, order.as_ref(), &issuer, worklist::results::ResultEvent::Signed, &[]);
        // the PDF by reference: a search does not render every report
        dr["presentedForm"][0] = json!({ "contentType": "application/pdf", "language": "zh-CN", "url": format!("{base}/api/reports/{}/pdf", r.id) });
        if let Ok(Some(pk)) = storage::query::patient_of_study(&st.storage.db, r.site_id, &r.study_instance_uid).await {
            dr["subject"]["reference"] = json!(format!("Patient/{pk}"));
        }
        entries.push(json!({ "fullUrl": format!("{base}/fhir/DiagnosticReport/{}", crate::fhir::report_resource_id(r)), "resource": dr, "search": { "mode": "match" } }));
    }
    Ok(fhir(StatusCode::OK, json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries })))
}

