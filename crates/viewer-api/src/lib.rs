//! readhub's HTTP API (axum): DICOMweb under `/dicom-web`, the worklist and report JSON API
//! under `/api`, and the web viewer at `/`. It holds no business rules beyond
//! authentication, authorization and wire formats.

mod api;
pub mod auth;
pub mod budget;
mod dicomweb;
pub mod ecg_analysis;
pub use api::ecg::{ingest_file as ingest_ecg_file, Ingested as EcgIngested, Refused as EcgRefused};
#[doc(hidden)]
pub mod fuzzing;
pub mod error;
pub mod fhir;
pub mod ops;
pub mod renditions;

/// A report's PDF as the sites get it (the same document as `GET /api/reports/{id}/pdf`),
/// for what sends reports out (the PACS, the FHIR server).
pub async fn report_pdf(st: &AppState, r: &worklist::reports::Report) -> Result<Vec<u8>, error::ApiError> {
    let ecg = ecg_analysis::report_ecg(st, r).await?;
    let r = r.clone();
    tokio::task::spawn_blocking(move || api::pdf::report_pdf(&r, ecg.as_ref()))
        .await
        .map_err(|e| error::ApiError::Internal(format!("PDF task: {e}")))?
}
pub mod trail;
mod ui;

use std::sync::Arc;

use axum::routing::get;
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
    /// the critical-ECG criteria (危急值) that make an ECG item STAT with a suggestion
    pub ecg_rules: ecg::criteria::Rules,
    /// accept SCP-ECG files (experimental: no independent reader to check against)
    pub ecg_scp_experimental: bool,
    /// gzip whole instances in their native (uncompressed) syntax for clients that accept it
    /// (WADO-RS instance, series, study). Off by default: the workstations and PACS that
    /// pull whole studies sit on the county LAN, where gzip costs more time than it saves
    /// (a 15 MB DX: 64 ms with gzip, see BENCHMARKS.md); the viewer's frames are compressed
    /// for the township line on their own.
    pub gzip_instances: bool,
    /// The bearer token `/metrics` asks for; without one `/metrics` is off.
    pub metrics_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: None,
            cors_origins: Vec::new(),
            media_memory_mb: 256,
            body_idle_timeout: std::time::Duration::from_secs(30),
            tls: false,
            ecg_rules: ecg::criteria::Rules::default(),
            ecg_scp_experimental: false,
            gzip_instances: false,
            metrics_token: None,
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
    /// the last readiness answer (`/readyz` asks the database at most once a second)
    pub readiness: Arc<ops::Readiness>,
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
            readiness: Arc::default(),
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

/// Every route of the API and DICOMweb, once: the router is built from it, and the
/// authorization matrix test (`tests/e2e/authz.rs`) walks it, so a route added here without
/// an expected answer for every role fails that test.
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// (method, path) of every API and DICOMweb route, as the router has them.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn table_routes(mut r: Router<AppState>) -> Router<AppState> {
            $( r = r.route($path, axum::routing::on(axum::routing::MethodFilter::$method, $handler)); )*
            r
        }
    };
}

route_table! {
    POST "/api/login" => api::session::login;
    POST "/api/logout" => api::session::logout;
    GET "/api/me" => api::session::me;
    POST "/api/me/password" => api::session::change_password;
    GET "/api/session" => api::session::session;
    GET "/api/worklist" => api::items::queue;
    GET "/api/worklist/{id}" => api::items::item;
    POST "/api/worklist/{id}/claim" => api::items::claim;
    POST "/api/worklist/{id}/release" => api::items::release;
    POST "/api/worklist/next" => api::items::claim_next;
    POST "/api/worklist/{id}/renew" => api::items::renew;
    POST "/api/worklist/{id}/reassign" => api::items::reassign;
    POST "/api/worklist/{id}/route" => api::items::reroute;
    POST "/api/worklist/{id}/priority" => api::items::set_priority;
    POST "/api/worklist/{id}/reject" => api::items::reject;
    GET "/api/worklist/{id}/events" => api::items::events;
    GET "/api/alerts" => api::items::alerts;
    POST "/api/alerts/{id}/ack" => api::items::acknowledge;
    GET "/api/admin/routing-rules" => api::admin::routing_rules;
    PUT "/api/admin/routing-rules" => api::admin::put_routing_rules;
    GET "/api/admin/pools" => api::admin::pools;
    POST "/api/admin/pools" => api::admin::add_pool;
    GET "/api/admin/sites" => api::admin::sites;
    POST "/api/admin/sites" => api::admin::add_site;
    GET "/api/admin/users" => api::admin::users;
    POST "/api/admin/users" => api::admin::add_user;
    PUT "/api/admin/pools/{pool}/sla" => api::admin::put_sla;
    PUT "/api/admin/pools/{pool}" => api::admin::pool_settings;
    PUT "/api/admin/sites/{name}/webhook" => api::admin::set_webhook;
    PUT "/api/admin/users/{name}/qualifications" => api::admin::qualifications;
    PUT "/api/admin/users/{name}/disabled" => api::admin::set_disabled;
    PUT "/api/admin/users/{name}/password" => api::admin::reset_password;
    PUT "/api/admin/sites/{name}/name" => api::admin::rename_site;
    DELETE "/api/admin/sites/{name}/ae-titles/{ae}" => api::admin::remove_ae_title;
    PUT "/api/admin/sites/{name}/hl7-senders/{sender}" => api::admin::add_hl7_sender;
    PUT "/api/admin/sites/{name}/outbound" => api::admin::set_outbound;
    PUT "/api/admin/pools/{pool}/ae-titles/{ae}" => api::admin::add_pool_ae;
    PUT "/api/admin/dicom-nodes/{ae}" => api::admin::set_node_address;
    GET "/api/admin/sites/{name}/outbound" => api::admin::outbound;
    GET "/api/admin/results" => api::admin::results_outbox;
    DELETE "/api/admin/sites/{name}/hl7-senders/{sender}" => api::admin::remove_hl7_sender;
    GET "/api/orders" => api::orders::list;
    POST "/fhir/ServiceRequest" => api::fhir::create_service_request;
    GET "/fhir/DiagnosticReport" => api::fhir::search_diagnostic_reports;
    GET "/fhir/Patient/{id}" => api::fhir::read_patient;
    POST "/api/orders" => api::orders::place;
    POST "/api/orders/{id}/cancel" => api::orders::cancel;
    POST "/api/admin/sites/{name}/certificates" => api::admin::bind_certificate;
    DELETE "/api/admin/sites/{name}/certificates/{fingerprint}" => api::admin::unbind_certificate;
    GET "/api/admin/audit" => api::audit::audit_trail;
    GET "/api/admin/audit/export" => api::audit::export;
    POST "/api/worklist/{id}/report/submit" => api::reports::submit;
    PUT "/api/worklist/{id}/report/preliminary" => api::reports::edit_preliminary;
    POST "/api/worklist/{id}/report/send-back" => api::reports::send_back;
    POST "/api/worklist/{id}/report/addendum" => api::reports::addendum;
    POST "/api/worklist/{id}/report/correct" => api::reports::correct;
    GET "/api/worklist/{id}/report/history" => api::reports::history;
    POST "/api/worklist/{id}/critical" => api::critical::flag_critical;
    GET "/api/worklist/{id}/priors" => api::reports::priors;
    GET "/api/critical" => api::critical::critical_results;
    POST "/api/critical/{id}/ack" => api::critical::acknowledge_critical;
    GET "/api/report-templates" => api::reports::templates;
    GET "/api/stats/turnaround" => api::admin::turnaround;
    PUT "/api/worklist/{id}/report" => api::reports::save_draft;
    GET "/api/worklist/{id}/report" => api::reports::item_report;
    POST "/api/worklist/{id}/report/sign" => api::reports::sign;
    GET "/api/site/studies" => api::items::site_studies;
    GET "/api/reports" => api::reports::reports;
    GET "/api/reports/{id}" => api::reports::report;
    GET "/api/reports/{id}/print" => api::print::report_page;
    GET "/api/reports/{id}/pdf" => api::pdf::report_pdf_route;
    GET "/api/waveforms/{study}/{series}/{sop}" => api::waveforms::waveform;
    POST "/api/ecg" => api::ecg::upload;
    GET "/api/ecg/{study}/{series}/{sop}/original" => api::ecg::original;
    GET "/api/worklist/{id}/ecg-suggestions" => api::ecg::suggestions;
    POST "/api/ecg-suggestions/{id}/confirm" => api::ecg::confirm;
    POST "/api/ecg-suggestions/{id}/dismiss" => api::ecg::dismiss;
    GET "/dicom-web/studies" => dicomweb::qido::search_studies;
    POST "/dicom-web/studies" => dicomweb::stow::store;
    POST "/dicom-web/studies/{study}" => dicomweb::stow::store_in_study;
    GET "/dicom-web/studies/{study}" => dicomweb::wado::retrieve_study_or_series;
    GET "/dicom-web/studies/{study}/series/{series}" => dicomweb::wado::retrieve_study_or_series;
    GET "/dicom-web/series" => dicomweb::qido::search_series;
    GET "/dicom-web/studies/{study}/series" => dicomweb::qido::search_series;
    GET "/dicom-web/instances" => dicomweb::qido::search_instances;
    GET "/dicom-web/studies/{study}/instances" => dicomweb::qido::search_instances;
    GET "/dicom-web/studies/{study}/series/{series}/instances" => dicomweb::qido::search_instances;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}" => dicomweb::wado::retrieve_instance;
    GET "/dicom-web/studies/{study}/thumbnail" => dicomweb::rendered::thumbnail;
    GET "/dicom-web/studies/{study}/series/{series}/thumbnail" => dicomweb::rendered::thumbnail;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/thumbnail" => dicomweb::rendered::thumbnail;
    GET "/dicom-web/studies/{study}/metadata" => dicomweb::metadata::retrieve_metadata;
    GET "/dicom-web/studies/{study}/series/{series}/metadata" => dicomweb::metadata::retrieve_metadata;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata" => dicomweb::metadata::retrieve_metadata;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}" => dicomweb::metadata::retrieve_bulkdata;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered" => dicomweb::rendered::rendered_instance;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}" => dicomweb::frames::retrieve_frames;
    GET "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered" => dicomweb::rendered::rendered_frame;
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let cors_layer = cors(&state.config.cors_origins);
    let app = Router::new()
        .route("/", get(ui::index))
        .route("/app/{file}", get(ui::asset))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }));
    let app = table_routes(app)
        // after routing, so the trail knows the route (and the viewer's files stay out of it)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), trail::record))
        // the operators' routes show no patient data: outside the trail
        .merge(ops::routes())
        // every route counted and timed by its pattern
        .route_layer(axum::middleware::from_fn(ops::observe));
    let app = if state.config.cors_origins.is_empty() { app } else { app.layer(cors_layer) };
    let idle = state.config.body_idle_timeout;
    let tls = state.config.tls;
    app.layer(axum::middleware::map_request(move |req: axum::extract::Request| async move { idle_bounded(req, idle) }))
        .layer(axum::middleware::from_fn(quiet_401_for_the_viewer))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_response(move |resp| strict_transport(resp, tls)))
        .layer(compression())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", http.request_id = %id, http.method = %req.method(), http.path = %req.uri().path())
                })
                // one line per answered request (status, latency): the access log
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        // a request id in every log line of the request and in the answer: the load
        // balancer's (x-request-id) when it sends one, else a new one
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(tower_http::request_id::MakeRequestUuid))
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

/// Marks a response gzip must leave alone: DICOM data in a compressed transfer syntax
/// (gzip would spend CPU for nothing), or whole native instances unless `gzip_instances`.
#[derive(Clone, Copy)]
pub(crate) struct Precompressed;

/// Native (uncompressed) transfer syntaxes: their pixel data compresses well with gzip.
pub(crate) fn is_native(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2")
}

/// The Content-Security-Policy of every response that sets none of its own: scripts,
/// styles, images, fonts and requests from the hub itself only (no inline script, no
/// `eval`; WebAssembly may be compiled, for the viewer's JPEG-LS codec), no plugins, and no framing by other pages (clickjacking). Images may also be
/// `data:`/`blob:` URLs the viewer makes from what it fetched.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; \
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
