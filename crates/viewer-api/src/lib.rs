//! readhub's HTTP API (axum): DICOMweb under `/dicom-web`, the worklist and report JSON API
//! under `/api`, and the web viewer at `/`. It holds no business rules beyond
//! authentication, authorization and wire formats.

mod api;
pub mod auth;
pub mod budget;
mod dicomweb;
#[doc(hidden)]
pub mod fuzzing;
pub mod error;
pub mod trail;
mod ui;

use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::Router;
use storage::Storage;
use tower_http::trace::TraceLayer;
use worklist::Worklist;

/// The address of the client a request came from (set per connection by the server; a
/// reverse proxy's address when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The caller's address as text, for the login throttle; "unknown" when the server set none
/// (tests that call the router directly).
pub(crate) fn client_of(extensions: &axum::http::Extensions) -> String {
    extensions.get::<ClientAddr>().map_or_else(|| "unknown".to_string(), |c| c.0.to_string())
}

/// HTTP settings (a section of readhub's config).
#[derive(Debug, Clone)]
pub struct Config {
    /// The base URL clients reach readhub at (e.g. behind a reverse proxy), used in
    /// retrieve URLs; when unset, taken from the request's Host header.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the API cross-origin (CORS), e.g. a viewer served
    /// from another host. Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// MiB that decoding (rendering, decoded frames, transcoding) may hold at once.
    pub media_memory_mb: u32,
    /// How long a request body may send nothing before the request is ended.
    pub body_idle_timeout: std::time::Duration,
    /// Served over HTTPS: the session cookie is `Secure`, responses carry HSTS, and the
    /// URLs handed out are `https://`.
    pub tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: None,
            cors_origins: Vec::new(),
            media_memory_mb: 256,
            body_idle_timeout: std::time::Duration::from_secs(30),
            tls: false,
        }
    }
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
    /// what decoding may hold in memory at once (see `budget`)
    pub media_budget: budget::MediaBudget,
    /// who read or changed which patient's data (see `trail`)
    pub audit: audit::AuditLog,
}

impl AppState {
    pub fn new(storage: Storage, worklist: Worklist, transfers: Arc<storage::Transfers>, audit: audit::AuditLog, config: Config) -> Self {
        AppState {
            audit,
            storage,
            worklist,
            media_budget: budget::MediaBudget::new(config.media_memory_mb),
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
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}

/// A request body that sends nothing for `idle` ends with an error (the handler answers
/// 400 and the connection is freed): a client that stalls mid-upload, on purpose or with a
/// broken link, must not hold a connection and an upload's staging file for ever.
fn idle_bounded(req: axum::extract::Request, idle: std::time::Duration) -> axum::extract::Request {
    use futures::StreamExt;
    req.map(|body| {
        let chunks = body.into_data_stream();
        let bounded = futures::stream::unfold(Some(chunks), move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(chunks))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the request body sent nothing for {} s", idle.as_secs()),
                    )),
                    None,
                )),
            }
        });
        axum::body::Body::from_stream(bounded)
    })
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(list)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH])
        .expose_headers([header::ETAG, header::WARNING, header::CONTENT_TYPE])
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::session::login))
        .route("/logout", post(api::session::logout))
        .route("/me", get(api::session::me))
        .route("/me/password", post(api::session::change_password))
        .route("/session", get(api::session::session))
        .route("/worklist", get(api::items::queue))
        .route("/worklist/{id}", get(api::items::item))
        .route("/worklist/{id}/claim", post(api::items::claim))
        .route("/worklist/{id}/release", post(api::items::release))
        .route("/worklist/next", post(api::items::claim_next))
        .route("/worklist/{id}/renew", post(api::items::renew))
        .route("/worklist/{id}/reassign", post(api::items::reassign))
        .route("/worklist/{id}/route", post(api::items::reroute))
        .route("/worklist/{id}/priority", post(api::items::set_priority))
        .route("/worklist/{id}/reject", post(api::items::reject))
        .route("/worklist/{id}/events", get(api::items::events))
        .route("/alerts", get(api::items::alerts))
        .route("/alerts/{id}/ack", post(api::items::acknowledge))
        .route("/admin/routing-rules", get(api::admin::routing_rules).put(api::admin::put_routing_rules))
        .route("/admin/pools", get(api::admin::pools).post(api::admin::add_pool))
        .route("/admin/sites", get(api::admin::sites).post(api::admin::add_site))
        .route("/admin/users", get(api::admin::users).post(api::admin::add_user))
        .route("/admin/pools/{pool}/sla", put(api::admin::put_sla))
        .route("/admin/pools/{pool}", put(api::admin::pool_settings))
        .route("/admin/sites/{name}/webhook", put(api::admin::set_webhook))
        .route("/admin/users/{name}/qualifications", put(api::admin::qualifications))
        .route("/admin/users/{name}/disabled", put(api::admin::set_disabled))
        .route("/admin/users/{name}/password", put(api::admin::reset_password))
        .route("/admin/sites/{name}/name", put(api::admin::rename_site))
        .route("/admin/sites/{name}/ae-titles/{ae}", delete(api::admin::remove_ae_title))
        .route("/admin/audit", get(api::audit::audit_trail))
        .route("/admin/audit/export", get(api::audit::export))
        .route("/worklist/{id}/report/submit", post(api::reports::submit))
        .route("/worklist/{id}/report/preliminary", put(api::reports::edit_preliminary))
        .route("/worklist/{id}/report/send-back", post(api::reports::send_back))
        .route("/worklist/{id}/report/addendum", post(api::reports::addendum))
        .route("/worklist/{id}/report/correct", post(api::reports::correct))
        .route("/worklist/{id}/report/history", get(api::reports::history))
        .route("/worklist/{id}/critical", post(api::critical::flag_critical))
        .route("/worklist/{id}/priors", get(api::reports::priors))
        .route("/critical", get(api::critical::critical_results))
        .route("/critical/{id}/ack", post(api::critical::acknowledge_critical))
        .route("/report-templates", get(api::reports::templates))
        .route("/stats/turnaround", get(api::admin::turnaround))
        .route("/worklist/{id}/report", put(api::reports::save_draft).get(api::reports::item_report))
        .route("/worklist/{id}/report/sign", post(api::reports::sign))
        .route("/site/studies", get(api::items::site_studies))
        .route("/reports", get(api::reports::reports))
        .route("/reports/{id}", get(api::reports::report))
        .route("/reports/{id}/print", get(api::print::report_page))
        .route("/reports/{id}/pdf", get(api::pdf::report_pdf_route))
        .route("/waveforms/{study}/{series}/{sop}", get(api::waveforms::waveform));
    let dicomweb = Router::new()
        .route("/studies", get(dicomweb::qido::search_studies).post(dicomweb::stow::store))
        .route("/studies/{study}", post(dicomweb::stow::store_in_study).get(dicomweb::wado::retrieve_study_or_series))
        .route("/studies/{study}/series/{series}", get(dicomweb::wado::retrieve_study_or_series))
        .route("/series", get(dicomweb::qido::search_series))
        .route("/studies/{study}/series", get(dicomweb::qido::search_series))
        .route("/instances", get(dicomweb::qido::search_instances))
        .route("/studies/{study}/instances", get(dicomweb::qido::search_instances))
        .route("/studies/{study}/series/{series}/instances", get(dicomweb::qido::search_instances))
        .route("/studies/{study}/series/{series}/instances/{sop}", get(dicomweb::wado::retrieve_instance))
        .route("/studies/{study}/thumbnail", get(dicomweb::rendered::thumbnail))
        .route("/studies/{study}/series/{series}/thumbnail", get(dicomweb::rendered::thumbnail))
        .route("/studies/{study}/series/{series}/instances/{sop}/thumbnail", get(dicomweb::rendered::thumbnail))
        .route("/studies/{study}/metadata", get(dicomweb::metadata::retrieve_metadata))
        .route("/studies/{study}/series/{series}/metadata", get(dicomweb::metadata::retrieve_metadata))
        .route("/studies/{study}/series/{series}/instances/{sop}/metadata", get(dicomweb::metadata::retrieve_metadata))
        .route("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}", get(dicomweb::metadata::retrieve_bulkdata))
        .route("/studies/{study}/series/{series}/instances/{sop}/rendered", get(dicomweb::rendered::rendered_instance))
        .route("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", get(dicomweb::frames::retrieve_frames))
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
            get(dicomweb::rendered::rendered_frame),
        );
    let cors_layer = cors(&state.config.cors_origins);
    let app = Router::new()
        .route("/", get(ui::index))
        .route("/app/{file}", get(ui::asset))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .nest("/api", api)
        .nest("/dicom-web", dicomweb)
        // after routing, so the trail knows the route (and the viewer's files stay out of it)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), trail::record));
    let app = if state.config.cors_origins.is_empty() { app } else { app.layer(cors_layer) };
    let idle = state.config.body_idle_timeout;
    let tls = state.config.tls;
    app.layer(axum::middleware::map_request(move |req: axum::extract::Request| async move { idle_bounded(req, idle) }))
        .layer(axum::middleware::from_fn(quiet_401_for_the_viewer))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_response(move |resp| strict_transport(resp, tls)))
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

/// The Content-Security-Policy of every response that sets none of its own: scripts,
/// styles, images, fonts and requests from the hub itself only (no inline script, no
/// `eval`), no plugins, and no framing by other pages (clickjacking). Images may also be
/// `data:`/`blob:` URLs the viewer makes from what it fetched.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response (a handler may set a stricter or more specific
/// Content-Security-Policy itself, as the print page does for its stylesheet).
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// Over HTTPS, browsers are told to use nothing else for this host for a year (HSTS): a
/// later `http://` link or a hostile network cannot downgrade a reader's session.
async fn strict_transport(mut resp: axum::response::Response, tls: bool) -> axum::response::Response {
    if tls {
        resp.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
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
