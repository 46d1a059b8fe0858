//! readhub's HTTP API (axum): DICOMweb under `/dicom-web`, the worklist and report JSON API
//! under `/api`, and the web viewer at `/`. It holds no business rules beyond
//! authentication, authorization and wire formats.

mod api;
pub mod auth;
mod dicomweb;
pub mod ecg;
pub mod error;
mod html;
mod pdf;
mod print;
mod stow;
pub mod render;
mod reporting;
mod ui;
mod workflow;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use storage::Storage;
use tower_http::trace::TraceLayer;
use worklist::Worklist;

/// HTTP settings (a section of readhub's config).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The base URL clients reach readhub at (e.g. behind a reverse proxy), used in
    /// retrieve URLs; when unset, taken from the request's Host header.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the API cross-origin (CORS), e.g. a viewer served
    /// from another host. Empty: same origin only.
    pub cors_origins: Vec<String>,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub worklist: Worklist,
    pub config: Arc<Config>,
    pub basic_cache: Arc<auth::BasicCache>,
    /// STOW-RS requests are transfers, like associations (storage::arrival)
    pub transfers: Arc<storage::Transfers>,
}

impl AppState {
    pub fn new(storage: Storage, worklist: Worklist, transfers: Arc<storage::Transfers>, config: Config) -> Self {
        AppState {
            storage,
            worklist,
            config: Arc::new(config),
            basic_cache: Arc::new(auth::BasicCache::default()),
            transfers,
        }
    }

    /// The base of the URLs we hand out (`http://host:port`, no trailing slash).
    pub fn public_base(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(u) = &self.config.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}")
    }
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(list)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH])
        .expose_headers([header::ETAG, header::WARNING, header::CONTENT_TYPE])
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/session", get(api::session))
        .route("/worklist", get(api::queue))
        .route("/worklist/{id}", get(api::item))
        .route("/worklist/{id}/claim", post(api::claim))
        .route("/worklist/{id}/release", post(api::release))
        .route("/worklist/next", post(workflow::claim_next))
        .route("/worklist/{id}/renew", post(workflow::renew))
        .route("/worklist/{id}/reassign", post(workflow::reassign))
        .route("/worklist/{id}/route", post(workflow::reroute))
        .route("/worklist/{id}/priority", post(workflow::set_priority))
        .route("/worklist/{id}/reject", post(workflow::reject))
        .route("/worklist/{id}/events", get(workflow::events))
        .route("/alerts", get(workflow::alerts))
        .route("/alerts/{id}/ack", post(workflow::acknowledge))
        .route("/admin/routing-rules", get(workflow::routing_rules).put(workflow::put_routing_rules))
        .route("/admin/pools", get(workflow::pools).post(workflow::add_pool))
        .route("/admin/sites", get(workflow::sites).post(workflow::add_site))
        .route("/admin/users", get(workflow::users).post(workflow::add_user))
        .route("/admin/pools/{pool}/sla", put(workflow::put_sla))
        .route("/admin/pools/{pool}", put(reporting::pool_settings))
        .route("/admin/sites/{name}/webhook", put(reporting::set_webhook))
        .route("/admin/users/{name}/qualifications", put(reporting::qualifications))
        .route("/worklist/{id}/report/submit", post(reporting::submit))
        .route("/worklist/{id}/report/preliminary", put(reporting::edit_preliminary))
        .route("/worklist/{id}/report/send-back", post(reporting::send_back))
        .route("/worklist/{id}/report/addendum", post(reporting::addendum))
        .route("/worklist/{id}/report/correct", post(reporting::correct))
        .route("/worklist/{id}/report/history", get(reporting::history))
        .route("/worklist/{id}/critical", post(reporting::flag_critical))
        .route("/worklist/{id}/priors", get(reporting::priors))
        .route("/critical", get(reporting::critical_results))
        .route("/critical/{id}/ack", post(reporting::acknowledge_critical))
        .route("/report-templates", get(reporting::templates))
        .route("/stats/turnaround", get(reporting::turnaround))
        .route("/worklist/{id}/report", put(api::save_draft).get(api::item_report))
        .route("/worklist/{id}/report/sign", post(api::sign))
        .route("/site/studies", get(api::site_studies))
        .route("/reports", get(api::reports))
        .route("/reports/{id}", get(api::report))
        .route("/reports/{id}/print", get(print::report_page))
        .route("/reports/{id}/pdf", get(pdf::report_pdf_route))
        .route("/waveforms/{study}/{series}/{sop}", get(dicomweb::waveform));
    let dicomweb = Router::new()
        .route("/studies", get(dicomweb::search_studies).post(stow::store))
        .route("/studies/{study}", post(stow::store_in_study).get(dicomweb::retrieve_study_or_series))
        .route("/studies/{study}/series/{series}", get(dicomweb::retrieve_study_or_series))
        .route("/series", get(dicomweb::search_series))
        .route("/studies/{study}/series", get(dicomweb::search_series))
        .route("/instances", get(dicomweb::search_instances))
        .route("/studies/{study}/instances", get(dicomweb::search_instances))
        .route("/studies/{study}/series/{series}/instances", get(dicomweb::search_instances))
        .route("/studies/{study}/series/{series}/instances/{sop}", get(dicomweb::retrieve_instance))
        .route("/studies/{study}/thumbnail", get(dicomweb::thumbnail))
        .route("/studies/{study}/series/{series}/thumbnail", get(dicomweb::thumbnail))
        .route("/studies/{study}/series/{series}/instances/{sop}/thumbnail", get(dicomweb::thumbnail))
        .route("/studies/{study}/metadata", get(dicomweb::retrieve_metadata))
        .route("/studies/{study}/series/{series}/metadata", get(dicomweb::retrieve_metadata))
        .route("/studies/{study}/series/{series}/instances/{sop}/metadata", get(dicomweb::retrieve_metadata))
        .route("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}", get(dicomweb::retrieve_bulkdata))
        .route("/studies/{study}/series/{series}/instances/{sop}/rendered", get(dicomweb::rendered_instance))
        .route("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", get(dicomweb::retrieve_frames))
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
            get(dicomweb::rendered_frame),
        );
    let cors_layer = cors(&state.config.cors_origins);
    let app = Router::new()
        .route("/", get(ui::index))
        .route("/app/{file}", get(ui::asset))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .nest("/api", api)
        .nest("/dicom-web", dicomweb);
    let app = if state.config.cors_origins.is_empty() { app } else { app.layer(cors_layer) };
    app.layer(axum::middleware::from_fn(quiet_401_for_the_viewer))
        .layer(compression())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::info_span!("http", http.method = %req.method(), http.path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// HTTP compression (gzip, fastest level) where it pays: JSON, DICOM JSON, the viewer's
/// files, SVG ECGs and native pixel data (16-bit frames and uncompressed instances shrink to
/// about half, which is what a 20 Mbit/s township line needs). Not for JPEG/PNG renderings,
/// PDFs or compressed transfer syntaxes, which are already as small as they get.
fn compression() -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    use tower_http::compression::{CompressionLayer, CompressionLevel};
    let already_compressed = |_: axum::http::StatusCode, _: axum::http::Version, _: &axum::http::HeaderMap, ext: &axum::http::Extensions| {
        ext.get::<Precompressed>().is_none()
    };
    CompressionLayer::new().quality(CompressionLevel::Fastest).compress_when(
        SizeAbove::new(1024)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::const_new("application/pdf"))
            .and(NotForContentType::GRPC)
            .and(already_compressed),
    )
}

/// Marks a response whose body is DICOM data in a compressed transfer syntax: gzip would
/// spend CPU for nothing.
#[derive(Clone, Copy)]
pub(crate) struct Precompressed;

/// Native (uncompressed) transfer syntaxes: their pixel data compresses well with gzip.
pub(crate) fn is_native(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2")
}

/// The web viewer marks its requests (`X-Requested-With`); a 401 to them carries no
/// `WWW-Authenticate`, or the browser would pop its own Basic login box over the viewer's.
async fn quiet_401_for_the_viewer(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let from_viewer = req.headers().contains_key("x-requested-with");
    let mut resp = next.run(req).await;
    if from_viewer {
        resp.headers_mut().remove(axum::http::header::WWW_AUTHENTICATE);
    }
    resp
}
