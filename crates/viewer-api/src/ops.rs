//! What the operators and the load balancer look at: `GET /healthz` (the process answers),
//! `GET /readyz` (it can do its work: database and object store answer, migrations applied)
//! and `GET /metrics` (Prometheus text format, behind its own bearer token). None of them
//! carries patient data; the first two need no login, so a load balancer can ask them.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};

use crate::AppState;

/// The process's one metrics recorder (the `metrics` facade is global: every crate records
/// through it), installed on first use.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // latencies: 5 ms (a QIDO) to a minute (a large C-STORE over a township line)
        let seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        // turnaround: minutes (STAT) to days (routine at a weekend)
        let turnaround = [60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 172800.0];
        let builder = PrometheusBuilder::new()
            .set_buckets(&seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("readhub_turnaround_seconds".into()), &turnaround))
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only what it is given");
        }
        handle
    })
}

/// The operators' routes, outside the audit trail (they show no patient data).
pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_page))
}

/// The process is alive and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for the database and the object store: a load balancer asks
/// every few seconds and must hear "no" rather than time out.
const READY_WITHIN: Duration = Duration::from_secs(3);

/// How long one readiness answer is given again: `/readyz` needs no login, so without it any
/// peer could make the database and the object store answer as fast as it asks.
const READY_FOR: Duration = Duration::from_secs(1);

/// The last readiness check: what was wrong (nothing: ready), and when it was asked.
#[derive(Default)]
pub struct Readiness(tokio::sync::Mutex<Option<(Instant, Vec<String>)>>);

/// Ready to take work: the database answers with every migration applied, and the object
/// store answers. 503 with what is not, in plain words, otherwise. Checked at most once per
/// [`READY_FOR`]; requests meanwhile wait for the check in progress and share its answer.
async fn readyz(State(st): State<AppState>) -> Response {
    let problems = {
        let mut last = st.readiness.0.lock().await;
        match &*last {
            Some((at, problems)) if at.elapsed() < READY_FOR => problems.clone(),
            _ => {
                let problems = check_ready(&st).await;
                *last = Some((Instant::now(), problems.clone()));
                problems
            }
        }
    };
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready / 未就绪:\n{}\n", problems.join("\n"))).into_response()
    }
}

async fn check_ready(st: &AppState) -> Vec<String> {
    let db = tokio::time::timeout(READY_WITHIN, st.storage.db.check_ready());
    let blobs = tokio::time::timeout(READY_WITHIN, st.storage.blobs.check_ready());
    let (db, blobs) = tokio::join!(db, blobs);
    let mut problems = Vec::new();
    match db {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("database: {e}")),
        Err(_) => problems.push(format!("database: no answer within {} s", READY_WITHIN.as_secs())),
    }
    match blobs {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("object store: {e}")),
        Err(_) => problems.push(format!("object store: no answer within {} s", READY_WITHIN.as_secs())),
    }
    if !problems.is_empty() {
        tracing::warn!(problems = ?problems, "not ready");
    }
    problems
}

/// Prometheus text format. Off (404) unless `metrics_token` is set; then only with
/// `Authorization: Bearer <token>`.
async fn metrics_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = st.config.metrics_token.as_deref() else {
        return (StatusCode::NOT_FOUND, "metrics are off: set metrics_token (READHUB_METRICS_TOKEN) / 未启用指标\n").into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // digests of equal length: the comparison tells nothing of the token's bytes
    if Sha256::digest(given.as_bytes()) != Sha256::digest(token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"readhub metrics\"")],
            "a bearer token is needed (metrics_token) / 需要指标令牌\n",
        )
            .into_response();
    }
    record_gauges(&st).await;
    let handle = recorder();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// The figures read at each scrape: queues, pending critical results, backlogs, DB pool.
async fn record_gauges(st: &AppState) {
    match st.worklist.gauges().await {
        Ok(g) => {
            for (pool, state, n) in g.queue {
                metrics::gauge!("readhub_worklist_items", "pool" => pool, "state" => state.as_str()).set(n as f64);
            }
            for (pool, n) in g.breached_open {
                metrics::gauge!("readhub_worklist_breached_open", "pool" => pool).set(n as f64);
            }
            metrics::gauge!("readhub_critical_results_unacknowledged").set(g.critical_unacknowledged as f64);
            for (job, n) in g.backlog {
                metrics::gauge!("readhub_background_backlog", "job" => job).set(n as f64);
            }
            metrics::gauge!("readhub_metrics_database_up").set(1.0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "the worklist's figures cannot be read for /metrics");
            metrics::gauge!("readhub_metrics_database_up").set(0.0);
        }
    }
    let (size, idle) = st.storage.db.pool_use();
    metrics::gauge!("readhub_db_pool_connections", "state" => "in_use").set(size.saturating_sub(idle as u32) as f64);
    metrics::gauge!("readhub_db_pool_connections", "state" => "idle").set(idle as f64);
}

/// Count and time every routed request by its route (the pattern, never the path: a
/// study UID in a label would be patient data and unbounded).
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("readhub_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("readhub_http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    resp
}
