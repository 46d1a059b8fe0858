//! readhub's HTTP API (axum): DICOMweb under `/dicom-web`, the worklist and report JSON API
//! under `/api`, and the web viewer at `/`. It holds no business rules beyond
//! authentication, authorization and wire formats.

mod api;
pub mod auth;
mod dicomweb;
pub mod ecg;
pub mod error;
mod html;
mod print;
mod stow;
pub mod render;
mod ui;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use storage::Storage;
use tower_http::trace::TraceLayer;
use worklist::Worklist;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub worklist: Worklist,
    pub basic_cache: Arc<auth::BasicCache>,
}

impl AppState {
    pub fn new(storage: Storage, worklist: Worklist) -> Self {
        AppState {
            storage,
            worklist,
            basic_cache: Arc::new(auth::BasicCache::default()),
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/worklist", get(api::queue))
        .route("/worklist/{id}", get(api::item))
        .route("/worklist/{id}/claim", post(api::claim))
        .route("/worklist/{id}/release", post(api::release))
        .route("/worklist/{id}/report", put(api::save_draft).get(api::item_report))
        .route("/worklist/{id}/report/sign", post(api::sign))
        .route("/site/studies", get(api::site_studies))
        .route("/reports", get(api::reports))
        .route("/reports/{id}", get(api::report))
        .route("/reports/{id}/print", get(print::report_page))
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
    Router::new()
        .route("/", get(ui::index))
        .nest("/api", api)
        .nest("/dicom-web", dicomweb)
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::info_span!("http", http.method = %req.method(), http.path = %req.uri().path())
            }),
        )
        .with_state(state)
}
