//! The authorization matrix (issue 12, item 8), generated from the router's own route table
//! (`viewer_api::ROUTES`): every route × every caller, on both backends. The callers are
//! anonymous, an admin, a reader of the subject's pool and one of the other pool, a
//! technician and a referring doctor of the subject's site and of another site. The subject
//! is site A's CR study (its worklist item, signed report, critical result) or, for the
//! waveform route, site A's ECG. The expected answer of each cell is written once, in
//! [`EXPECTED`]; a route that is not there fails the test.
//!
//! Answers: `1` 401 (sign in), `F` 403 (not for this role), `N` 404 (not visible to this
//! caller: the hub does not say that it exists), `O` let through (anything else below 500:
//! the request passed authorization and was then served, or refused on its merits: 400,
//! 409, 415, 422…). Bodies are ones that parse, so that a refusal is the hub's decision, not
//! the JSON extractor's; state-changing requests run after every read, so that what they
//! change (a correction supersedes the report) does not change the reads' answers.

use super::*;

/// The callers, in the order of the answer strings.
const CALLERS: [&str; 8] = ["anon", "admin", "rad", "ecg", "tech-a", "tech-b", "ref-a", "ref-b"];

/// (method, route, answers for anon admin rad ecg tech-a tech-b ref-a ref-b).
const EXPECTED: &[(&str, &str, &str)] = &[
    // sessions: open to all; the rest needs a signed-in user
    ("POST", "/api/login", "OOOOOOOO"),
    ("POST", "/api/logout", "OOOOOOOO"),
    ("GET", "/api/me", "1OOOOOOO"),
    ("POST", "/api/me/password", "1OOOOOOO"),
    ("GET", "/api/session", "OOOOOOOO"),
    // worklist: readers of the item's pool and admins see items; a site's staff see their
    // own site's items (what became of their studies), nobody else's
    ("GET", "/api/worklist", "1OOOFFFF"),
    ("GET", "/api/worklist/{id}", "1OONONON"),
    ("POST", "/api/worklist/{id}/claim", "1FONFFFF"),
    ("POST", "/api/worklist/{id}/release", "1OONFFFF"),
    ("POST", "/api/worklist/next", "1FOOFFFF"),
    ("POST", "/api/worklist/{id}/renew", "1FONFFFF"),
    ("POST", "/api/worklist/{id}/reassign", "1OFNFFFF"),
    ("POST", "/api/worklist/{id}/route", "1OFNFFFF"),
    ("POST", "/api/worklist/{id}/priority", "1OONONFN"),
    ("POST", "/api/worklist/{id}/reject", "1OONFFFF"),
    ("GET", "/api/worklist/{id}/events", "1OONONON"),
    ("GET", "/api/alerts", "1OOOOOOO"),
    ("POST", "/api/alerts/{id}/ack", "1ONNONON"),
    // administration: admins only
    ("GET", "/api/admin/routing-rules", "1OFFFFFF"),
    ("PUT", "/api/admin/routing-rules", "1OFFFFFF"),
    ("GET", "/api/admin/pools", "1OFFFFFF"),
    ("POST", "/api/admin/pools", "1OFFFFFF"),
    ("GET", "/api/admin/sites", "1OFFFFFF"),
    ("POST", "/api/admin/sites", "1OFFFFFF"),
    ("GET", "/api/admin/users", "1OFFFFFF"),
    ("POST", "/api/admin/users", "1OFFFFFF"),
    ("PUT", "/api/admin/pools/{pool}/sla", "1OFFFFFF"),
    ("PUT", "/api/admin/pools/{pool}", "1OFFFFFF"),
    ("PUT", "/api/admin/sites/{name}/webhook", "1OFFFFFF"),
    ("PUT", "/api/admin/users/{name}/qualifications", "1OFFFFFF"),
    ("PUT", "/api/admin/users/{name}/disabled", "1OFFFFFF"),
    ("PUT", "/api/admin/users/{name}/password", "1OFFFFFF"),
    ("PUT", "/api/admin/sites/{name}/name", "1OFFFFFF"),
    ("DELETE", "/api/admin/sites/{name}/ae-titles/{ae}", "1OFFFFFF"),
    ("PUT", "/api/admin/sites/{name}/hl7-senders/{sender}", "1OFFFFFF"),
    ("PUT", "/api/admin/sites/{name}/outbound", "1OFFFFFF"),
    ("GET", "/api/admin/sites/{name}/outbound", "1OFFFFFF"),
    ("GET", "/api/admin/results", "1OFFFFFF"),
    ("PUT", "/api/admin/pools/{pool}/ae-titles/{ae}", "1OFFFFFF"),
    ("PUT", "/api/admin/dicom-nodes/{ae}", "1OFFFFFF"),
    ("DELETE", "/api/admin/sites/{name}/hl7-senders/{sender}", "1OFFFFFF"),
    // orders: a site's staff see their site's, admins all; technicians (and admins, naming
    // the site) register and cancel them; the order here is site A's
    ("GET", "/api/orders", "1OFFOOOO"),
    ("POST", "/api/orders", "1OFFOOFF"),
    ("POST", "/api/orders/{id}/cancel", "1OFFONFF"),
    // FHIR: a site's accounts order (an admin names the site); reports and patients as the
    // JSON API scopes them (readers through their items)
    ("POST", "/fhir/ServiceRequest", "1OFFOOOO"),
    ("GET", "/fhir/DiagnosticReport", "1OFFOOOO"),
    ("GET", "/fhir/Patient/{id}", "1OFFONON"),
    ("POST", "/api/admin/sites/{name}/certificates", "1OFFFFFF"),
    ("DELETE", "/api/admin/sites/{name}/certificates/{fingerprint}", "1OFFFFFF"),
    ("GET", "/api/admin/audit", "1OFFFFFF"),
    ("GET", "/api/admin/audit/export", "1OFFFFFF"),
    ("GET", "/api/stats/turnaround", "1OFFFFFF"),
    // reports: the reader of the pool writes (a junior, as `rad` is, neither edits another's
    // preliminary report nor sends it back: that is a senior's); the site reads the final
    // one; a site's staff (technician or doctor) acknowledge its critical results
    ("POST", "/api/worklist/{id}/report/submit", "1FONFFFF"),
    ("PUT", "/api/worklist/{id}/report/preliminary", "1FFNFFFF"),
    ("POST", "/api/worklist/{id}/report/send-back", "1FFNFFFF"),
    ("POST", "/api/worklist/{id}/report/addendum", "1FONFFFF"),
    ("POST", "/api/worklist/{id}/report/correct", "1FONFFFF"),
    ("GET", "/api/worklist/{id}/report/history", "1OONFFFF"),
    ("PUT", "/api/worklist/{id}/report", "1FONFFFF"),
    ("GET", "/api/worklist/{id}/report", "1OONONON"),
    ("POST", "/api/worklist/{id}/report/sign", "1FONFFFF"),
    ("POST", "/api/worklist/{id}/critical", "1FONFFFF"),
    ("GET", "/api/worklist/{id}/priors", "1OONONON"),
    ("GET", "/api/critical", "1OOOOOOO"),
    ("POST", "/api/critical/{id}/ack", "1FFNONON"),
    ("GET", "/api/report-templates", "1OOOOOOO"),
    ("GET", "/api/site/studies", "1FFFOOOO"),
    ("GET", "/api/reports", "1OFFOOOO"),
    ("GET", "/api/reports/{id}", "1OONONON"),
    ("GET", "/api/reports/{id}/print", "1OONONON"),
    ("GET", "/api/reports/{id}/pdf", "1OONONON"),
    ("GET", "/api/waveforms/{study}/{series}/{sop}", "1ONOONON"),
    // ECG files: a site's technicians (and admins, naming the site) upload; the original
    // of a converted ECG is served like its instance (this DICOM ECG has none: 404 to all)
    ("POST", "/api/ecg", "1OFFOOFF"),
    ("GET", "/api/ecg/{study}/{series}/{sop}/original", "1NNNNNNN"),
    // critical-ECG suggestions: readers of the item's pool (and admins) see them; only
    // readers decide them (this item has none: 404 to the readers)
    ("GET", "/api/worklist/{id}/ecg-suggestions", "1OONFFFF"),
    ("POST", "/api/ecg-suggestions/{id}/confirm", "1FNNFFFF"),
    ("POST", "/api/ecg-suggestions/{id}/dismiss", "1FNNFFFF"),
    // DICOMweb: searches answer everyone signed in (scoped: a caller who may not see the
    // study gets an empty answer); a named study answers 404 to whoever may not see it
    ("GET", "/dicom-web/studies", "1OOOOOOO"),
    ("POST", "/dicom-web/studies", "1OFFOOFF"),
    ("POST", "/dicom-web/studies/{study}", "1OFFOOFF"),
    ("GET", "/dicom-web/studies/{study}", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}", "1OONONON"),
    ("GET", "/dicom-web/series", "1OOOOOOO"),
    ("GET", "/dicom-web/studies/{study}/series", "1OOOOOOO"),
    ("GET", "/dicom-web/instances", "1OOOOOOO"),
    ("GET", "/dicom-web/studies/{study}/instances", "1OOOOOOO"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances", "1OOOOOOO"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/thumbnail", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/thumbnail", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/thumbnail", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/metadata", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/metadata", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", "1OONONON"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered", "1OONONON"),
];

/// A body that parses for each route that takes one (the rest get none).
fn body_for(method: &str, route: &str) -> Option<Value> {
    let b = match route {
        "/api/login" => json!({"username": "nobody", "password": "not-a-password"}),
        "/api/me/password" => json!({"old_password": "not-my-password", "new_password": "x"}),
        "/api/worklist/{id}/reassign" => json!({"reader": "rad"}),
        "/api/worklist/{id}/route" => json!({"pool": "imaging"}),
        "/api/worklist/{id}/priority" => json!({"priority": "stat"}),
        "/api/worklist/{id}/reject" => json!({"reason": "positioning"}),
        "/api/worklist/{id}/report/addendum" => json!({"text": "补充"}),
        "/api/worklist/{id}/report/correct" => json!({"impression": "更正", "reason": "typo"}),
        "/api/worklist/{id}/critical" => json!({"finding": "x"}),
        "/api/admin/routing-rules" => json!([]),
        "/api/admin/pools" => json!({"name": "imaging", "kind": "imaging"}),
        "/api/admin/sites" => json!({"name": "Site-Z", "ae_titles": []}),
        "/api/admin/users" => json!({"username": "dummy2", "role": "admin", "password": "x"}),
        "/api/admin/sites/{name}/webhook" => json!({"url": null}),
        "/api/admin/users/{name}/disabled" => json!({"disabled": false}),
        "/api/admin/users/{name}/password" => json!({"password": "x"}),
        "/api/admin/sites/{name}/name" => json!({"name": "Site-Z"}),
        "/api/admin/sites/{name}/certificates" => json!({"fingerprint": "not-hex"}),
        "/api/orders" => json!({"accession_number": "AUTHZ-NEW", "patient": {"id": "P-AUTHZ"}, "modality": "DX"}),
        "/api/admin/dicom-nodes/{ae}" => json!({"host": "127.0.0.1", "port": 104}),
        _ if method == "POST" || method == "PUT" => json!({}),
        _ => return None,
    };
    Some(b)
}

fn fingerprint_of(hex: &str) -> readhub_tls::Fingerprint {
    readhub_tls::Fingerprint::parse(hex).unwrap()
}

/// The answer code of a status.
fn code(status: u16) -> char {
    match status {
        401 => '1',
        403 => 'F',
        404 => 'N',
        s if s < 500 => 'O',
        _ => '!',
    }
}

async fn authorization_matrix(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    hub.site("Site-Z", &["MODZ"], None).await;
    let mut who = std::collections::HashMap::new();
    who.insert("admin", hub.user("admin", Role::Admin, None).await);
    who.insert("rad", hub.user("rad", Role::Reader, Some("imaging")).await);
    who.insert("ecg", hub.user("ecg", Role::Reader, Some("ecg")).await);
    who.insert("tech-a", hub.user("tech-a", Role::Technician, Some("Township-A")).await);
    who.insert("tech-b", hub.user("tech-b", Role::Technician, Some("Township-B")).await);
    who.insert("ref-a", hub.user("ref-a", Role::Referrer, Some("Township-A")).await);
    who.insert("ref-b", hub.user("ref-b", Role::Referrer, Some("Township-B")).await);
    hub.user("dummy", Role::Reader, Some("imaging")).await;
    // a binding for the admin's DELETE to remove
    let z = storage::sites::site_by_name(&hub.storage.db, "Site-Z").await.unwrap().unwrap();
    storage::sites::bind_certificate(&hub.storage.db, z.id, &fingerprint_of(&"ab".repeat(32))).await.unwrap();
    storage::sites::add_hl7_sender(&hub.storage.db, z.id, &storage::sites::Hl7Sender::parse("HISZ").unwrap()).await.unwrap();
    // site A's order
    let a = storage::sites::site_by_name(&hub.storage.db, "Township-A").await.unwrap().unwrap();
    let new_order = worklist::orders::NewOrder {
        accession_number: "AUTHZ-A".into(),
        patient: worklist::orders::OrderPatient { id: "P-AUTHZ".into(), ..Default::default() },
        modality: "CR".into(),
        ..Default::default()
    };
    let order = hub.worklist.place_order(a.id, new_order, "desk:test").await.unwrap().id;
    let rad = who["rad"].clone();

    // site A's CR study, read, reported and flagged critical; and site A's ECG
    let study = "1.2.826.0.1.3680043.10.9.990";
    let item = ready_item(&hub, "MODA", &rad, "P-AUTHZ", study).await;
    let sop = format!("{study}.1");
    let series = hub.get_json(&rad, &format!("/dicom-web/studies/{study}/series")).await[0]["0020000E"]["Value"][0].as_str().unwrap().to_string();
    assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/claim"), None).await.0, 200);
    assert_eq!(hub.send(&rad, Method::PUT, &format!("/api/worklist/{item}/report"), Some(json!({"findings": "f", "impression": "i"}))).await.0, 200);
    assert_eq!(hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/report/sign"), None).await.0, 200);
    let (code_, critical) = hub.send(&rad, Method::POST, &format!("/api/worklist/{item}/critical"), Some(json!({"finding": "气胸"}))).await;
    assert_eq!(code_, 200, "{critical}");
    let report = hub.get_json(&who["ref-a"], "/api/reports").await[0]["id"].as_i64().unwrap();
    let alert = hub.get_json(&who["ref-a"], "/api/alerts").await[0]["id"].as_i64().unwrap();
    let (code_, out) = hub.storescu("MODA", &[], &[data("pydicom/test_files/waveform_ecg.dcm")]).await;
    assert_eq!(code_, 0, "{out}");
    let (ecg_study, ecg_series, ecg_sop, _) = sop_of(&data("pydicom/test_files/waveform_ecg.dcm"));
    let patient_a = storage::query::patient_of_study(&hub.storage.db, a.id, study).await.unwrap().unwrap();

    let fill = |route: &str| -> String {
        let waveform = route.starts_with("/api/waveforms/") || route.starts_with("/api/ecg/");
        let mut out = Vec::new();
        for seg in route.split('/') {
            let v = match seg {
                "{id}" if route.starts_with("/api/reports/") => report.to_string(),
                "{id}" if route.starts_with("/api/critical/") => critical["id"].to_string(),
                "{id}" if route.starts_with("/api/alerts/") => alert.to_string(),
                "{id}" if route.starts_with("/api/orders/") => order.to_string(),
                "{id}" if route.starts_with("/fhir/Patient/") => patient_a.to_string(),
                "{sender}" => "HISZ".into(),
                "{id}" => item.to_string(),
                "{study}" if waveform => ecg_study.clone(),
                "{series}" if waveform => ecg_series.clone(),
                "{sop}" if waveform => ecg_sop.clone(),
                "{study}" => study.to_string(),
                "{series}" => series.clone(),
                "{sop}" => sop.clone(),
                "{frames}" => "1".into(),
                "{tag}" => "7FE00010".into(),
                "{pool}" => "imaging".into(),
                "{name}" if route.starts_with("/api/admin/users/") => "dummy".into(),
                "{name}" => "Site-Z".into(),
                "{ae}" => "MODZ".into(),
                "{fingerprint}" => "ab".repeat(32),
                s if s.starts_with('{') => panic!("route {route}: no value for {s}: say here what the matrix fills it with"),
                s => s.to_string(),
            };
            out.push(v);
        }
        let path = out.join("/");
        match route {
            // the query it needs to be more than a 400
            "/api/stats/turnaround" => format!("{path}?from=2026-01-01&to=2026-12-31&by=site"),
            "/fhir/DiagnosticReport" => format!("{path}?patient.identifier=P-AUTHZ"),
            _ => path,
        }
    };

    // every route of the router has its row, and every row is a route
    let routes: Vec<(&str, &str)> = viewer_api::ROUTES.to_vec();
    for (m, r) in &routes {
        assert!(EXPECTED.iter().any(|(em, er, _)| em == m && er == r), "{m} {r} is a route without expected answers: add its row to EXPECTED");
    }
    for (m, r, _) in EXPECTED {
        assert!(routes.contains(&(*m, *r)), "{m} {r} is in EXPECTED but not a route any more");
    }

    // reads first, then what changes state
    let mut order: Vec<&(&str, &str, &str)> = EXPECTED.iter().collect();
    order.sort_by_key(|(m, _, _)| *m != "GET");
    let mut wrong = Vec::new();
    let mut cells = 0;
    for (method, route, want) in order {
        let path = fill(route);
        let body = body_for(method, route);
        for (caller, expected) in CALLERS.iter().zip(want.chars()) {
            let mut rq = hub.http().request(method.parse().unwrap(), format!("{}{path}", hub.base));
            if *caller != "anon" {
                let (u, p) = &who[caller];
                rq = rq.basic_auth(u, Some(p));
            }
            if route.starts_with("/dicom-web/studies") && *method == "POST" {
                rq = rq.header("content-type", "multipart/related; type=\"application/dicom\"; boundary=x").body("--x--\r\n");
            } else if let Some(b) = &body {
                rq = rq.json(b);
            }
            let status = rq.send().await.unwrap().status().as_u16();
            cells += 1;
            if code(status) != expected {
                wrong.push(format!("{method} {route} as {caller}: expected {expected}, got {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells differ:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(cells, EXPECTED.len() * CALLERS.len());
    // the hub is still whole: the report stands, the admin still signs in
    assert_eq!(hub.get(&who["admin"], "/api/admin/users").await.status(), 200);
    hub.stop().await;
}

on_both!(authorization_matrix);
