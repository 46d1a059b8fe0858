//! Every API and DICOMweb request goes into the audit trail (the `audit` crate): one
//! middleware records who (filled in by authentication, or the name a failed login tried),
//! from where, what ([`action_for`]: the one table of which route is which action), on which
//! study or patient (the route's `{study}`, `{id}`, the QIDO keys, and what a handler adds,
//! such as the studies a STOW stored), and the outcome (from the status). The viewer's own
//! files, and the routes that touch no patient data (`/api/session`, `/api/me`, report
//! templates), are not recorded; nor are requests refused 401 that carried no user name
//! (no credentials, or a session token that is no longer valid): they touched nothing, and
//! anyone could otherwise fill the trail. A wrong password is recorded, with the name tried.

use std::sync::{Arc, Mutex};

use audit::{Action, Actor, Event, Outcome, Subject};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// What a request learns about itself on the way; the middleware writes it afterwards.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Found>>);

#[derive(Default)]
struct Found {
    user: Option<worklist::User>,
    /// the user name a failed authentication tried
    attempted: Option<String>,
    subjects: Vec<Subject>,
    detail: Option<String>,
}

impl AuditSlot {
    fn with<R>(&self, f: impl FnOnce(&mut Found) -> R) -> R {
        f(&mut self.0.lock().expect("audit slot"))
    }

    /// The caller is authenticated as `user`.
    pub fn user(&self, user: &worklist::User) {
        self.with(|f| f.user = Some(user.clone()));
    }

    /// Authentication as `name` failed.
    pub fn attempted(&self, name: &str) {
        self.with(|f| f.attempted = Some(name.chars().take(128).collect()));
    }

    /// The request touched this study (or item, report, patient).
    pub fn subject(&self, s: Subject) {
        self.with(|f| {
            if !f.subjects.contains(&s) {
                f.subjects.push(s)
            }
        });
    }

    pub fn detail(&self, d: impl Into<String>) {
        self.with(|f| f.detail = Some(d.into()));
    }
}

/// The slot of a request (handlers take it from the request's extensions).
pub(crate) fn slot(extensions: &axum::http::Extensions) -> Option<&AuditSlot> {
    extensions.get::<AuditSlot>()
}

/// Which action a route is; `None`: not recorded (no patient data).
pub fn action_for(method: &Method, route: &str) -> Option<Action> {
    use Action::*;
    let get = *method == Method::GET || *method == Method::HEAD;
    let a = match route {
        "/api/session" | "/api/me" | "/api/report-templates" => return None,
        "/api/login" => Login,
        "/api/me/password" => UserChange,
        "/api/logout" => Logout,
        r if r.starts_with("/dicom-web/") => {
            if !get {
                Store
            } else if r.ends_with("/frames/{frames}") {
                Frames
            } else if r.ends_with("/rendered") || r.ends_with("/thumbnail") {
                Rendered
            } else if r.ends_with("/metadata") || r.contains("/bulkdata/") {
                Metadata
            } else if r.ends_with("/studies") || r.ends_with("/series") || r.ends_with("/instances") {
                Query
            } else {
                Retrieve
            }
        }
        r if r.starts_with("/api/waveforms/") => Waveform,
        "/api/ecg" => Store,
        r if r.starts_with("/api/ecg/") => Retrieve,
        "/api/ecg-suggestions/{id}/confirm" => CriticalFlag,
        r if r.starts_with("/api/ecg-suggestions/") => ItemChange,
        r if r.starts_with("/api/admin/audit") => AuditRead,
        r if r.starts_with("/api/admin/users") && !get => UserChange,
        r if r.starts_with("/api/admin/sites") && !get => SiteChange,
        r if r.starts_with("/api/admin/") && !get => SettingsChange,
        "/api/worklist" | "/api/site/studies" | "/api/reports" | "/api/critical" | "/api/alerts" | "/api/orders" if get => ListView,
        r if r.starts_with("/api/orders") => Order,
        "/fhir/ServiceRequest" => Order,
        "/fhir/DiagnosticReport" => ListView,
        r if r.starts_with("/fhir/") => ItemView,
        "/api/reports/{id}" => ReportView,
        "/api/reports/{id}/print" => ReportPrint,
        "/api/reports/{id}/pdf" => ReportPdf,
        "/api/worklist/{id}/report/sign" => ReportSign,
        "/api/worklist/{id}/report/correct" => ReportCorrect,
        "/api/worklist/{id}/critical" => CriticalFlag,
        "/api/critical/{id}/ack" => CriticalAck,
        "/api/worklist/{id}/report" | "/api/worklist/{id}/report/history" if get => ReportView,
        r if r.starts_with("/api/worklist/{id}/report") => ReportEdit,
        r if r.starts_with("/api/worklist/") && get => ItemView,
        r if r.starts_with("/api/worklist/") => ItemChange,
        _ => Other,
    };
    Some(a)
}

/// The route's parameters by name: `/studies/{study}` against `/studies/1.2.3`.
fn params<'a>(route: &'a str, path: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
    route.split('/').zip(path.split('/')).filter_map(|(r, p)| r.strip_prefix('{').and_then(|r| r.strip_suffix('}')).map(|name| (name, p)))
}

/// What a route's parameters and a QIDO query name.
fn subjects_of(route: &str, path: &str, query: Option<&str>) -> Vec<Subject> {
    let mut out = Vec::new();
    for (name, value) in params(route, path) {
        let value = percent_decode(value);
        match name {
            "study" => out.push(Subject::Study(value)),
            "id" if route.starts_with("/api/worklist/") => out.extend(value.parse().ok().map(Subject::Item)),
            "id" if route.starts_with("/api/reports/") => out.extend(value.parse().ok().map(Subject::Report)),
            "id" if route.starts_with("/api/critical/") => out.extend(value.parse().ok().map(Subject::Critical)),
            _ => {}
        }
    }
    if route.starts_with("/dicom-web/") {
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "StudyInstanceUID" | "0020000D" => out.push(Subject::Study(v.into_owned())),
                "PatientID" | "00100020" => out.push(Subject::Patient { patient_id: v.into_owned() }),
                _ => {}
            }
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// The middleware.
pub(crate) async fn record(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let Some(action) = action_for(&method, &route) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(|q| q.chars().take(512).collect::<String>());
    let client = crate::client_of(req.extensions());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let mut outcome = Outcome::of_status(status);
    if action == Action::Login && status == 422 {
        // the login form's wrong name or password
        outcome = Outcome::Denied;
    }
    let found = std::mem::take(&mut *slot.0.lock().expect("audit slot"));
    if status == 401 && found.user.is_none() && found.attempted.is_none() {
        // no credentials (or an unknown session token): no patient data was touched and no
        // password tried; recording each would let anyone fill the disk with rows
        return resp;
    }
    let actor = match &found.user {
        Some(u) => Actor {
            username: Some(u.username.clone()),
            role: Some(u.role.to_string()),
            site_id: u.site_id.map(|s| s.get()),
            pool_id: u.pool_id.map(|p| p.get()),
            site_name: None,
            client: Some(client),
        },
        None => Actor { username: found.attempted.clone(), client: Some(client), ..Actor::default() },
    };
    // the path and query as asked, cut to a size a row should have (a URI may be 64 KiB)
    let mut detail = format!("{method} {}", path.chars().take(512).collect::<String>());
    if let Some(q) = &query {
        detail.push('?');
        detail.push_str(q);
    }
    detail.push_str(&format!(" → {status}"));
    if let Some(d) = found.detail {
        detail.push_str("; ");
        detail.push_str(&d);
    }
    let mut event = Event::new(actor, action, outcome).detail(detail);
    for s in subjects_of(&route, &path, query.as_deref()).into_iter().chain(found.subjects) {
        event = event.subject(s);
    }
    st.audit.record(event).await;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_subjects() {
        let s = subjects_of("/dicom-web/studies/{study}/series/{series}", "/dicom-web/studies/1.2.3/series/4.5", None);
        assert_eq!(s, vec![Subject::Study("1.2.3".into())]);
        let s = subjects_of("/api/worklist/{id}/priors", "/api/worklist/17/priors", None);
        assert_eq!(s, vec![Subject::Item(17)]);
        let s = subjects_of("/dicom-web/studies", "/dicom-web/studies", Some("PatientID=P%201&StudyInstanceUID=9.8"));
        assert_eq!(s, vec![Subject::Patient { patient_id: "P 1".into() }, Subject::Study("9.8".into())]);
    }

    #[test]
    fn routes_are_actions() {
        let g = Method::GET;
        assert_eq!(action_for(&g, "/dicom-web/studies"), Some(Action::Query));
        assert_eq!(action_for(&g, "/dicom-web/studies/{study}/series/{series}/instances"), Some(Action::Query));
        assert_eq!(action_for(&g, "/dicom-web/studies/{study}"), Some(Action::Retrieve));
        assert_eq!(action_for(&g, "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered"), Some(Action::Rendered));
        assert_eq!(action_for(&Method::POST, "/dicom-web/studies"), Some(Action::Store));
        assert_eq!(action_for(&Method::POST, "/api/worklist/{id}/report/sign"), Some(Action::ReportSign));
        assert_eq!(action_for(&g, "/api/worklist/{id}/report"), Some(Action::ReportView));
        assert_eq!(action_for(&Method::PUT, "/api/worklist/{id}/report"), Some(Action::ReportEdit));
        assert_eq!(action_for(&g, "/api/worklist/{id}/priors"), Some(Action::ItemView));
        assert_eq!(action_for(&Method::PUT, "/api/admin/users/{name}/disabled"), Some(Action::UserChange));
        assert_eq!(action_for(&g, "/api/session"), None);
    }
}
