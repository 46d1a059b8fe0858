//! readhub: wiring. [`run`] composes storage, the DICOM gateway, the worklist and the HTTP
//! API on listeners the caller has bound (so tests use port 0 and need no readiness sleep).

pub mod backup;
pub mod cli;
pub mod config;
pub mod import;
mod ecg_jobs;
mod mwl_source;
mod results_out;
pub mod http;
pub mod notify;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storage::lease::ClusterJob;
use storage::Storage;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use worklist::Worklist;

pub use config::Config;

/// The listeners readhub serves on: DICOM, HTTP(S), and DICOM over TLS and HL7 (MLLP)
/// when configured.
pub struct Listeners {
    pub dimse: TcpListener,
    pub http: TcpListener,
    pub dimse_tls: Option<TcpListener>,
    pub hl7: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let dimse = TcpListener::bind(&config.dicom_addr)
            .await
            .with_context(|| format!("cannot listen for DICOM on {} (READHUB_DICOM_ADDR)", config.dicom_addr))?;
        let http = TcpListener::bind(&config.http_addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {} (READHUB_HTTP_ADDR)", config.http_addr))?;
        let dimse_tls = match &config.dicom_tls_addr {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for DICOM TLS on {addr} (READHUB_DICOM_TLS_ADDR)"))?,
            ),
        };
        let hl7 = match &config.hl7_addr {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for HL7 (MLLP) on {addr} (READHUB_HL7_ADDR)"))?,
            ),
        };
        Ok(Listeners { dimse, http, dimse_tls, hl7 })
    }
}

/// Open (and migrate) the index and blob store, and make sure the defaults exist.
pub async fn open(config: &Config) -> anyhow::Result<(Storage, Worklist, i64)> {
    open_with_clock(config, Arc::new(worklist::SystemClock)).await
}

/// [`open`] with the worklist on a given clock (tests move time by hand).
pub async fn open_with_clock(config: &Config, clock: Arc<dyn worklist::Clock>) -> anyhow::Result<(Storage, Worklist, i64)> {
    let db_url = config.database_url()?;
    let storage = Storage::open(&db_url, &config.object_store_url()?, config.limits()?)
        .await
        .context("cannot open storage")?;
    let worklist = Worklist::with_clock(storage.db.clone(), config.worklist()?, clock);
    let consortium = worklist.ensure_defaults().await.context("cannot create the default consortium")?;
    if !config.routing_rules.is_empty() {
        let version = worklist
            .install_rules(&config.routing_rules, "config")
            .await
            .context("the routing_rules of the configuration cannot be installed")?;
        tracing::info!(version, "routing rules from the configuration are current");
    }
    Ok((storage, worklist, consortium))
}

/// A staging file this old belongs to no upload in progress (a peer silent this long is
/// aborted well before).
const STAGING_MAX_AGE: Duration = Duration::from_secs(600);

/// How often every node writes its heartbeat (`node_timeout_secs` must be a few of these).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long open HTTP connections may finish after a stop is asked for.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// Serve until `shutdown` resolves.
pub async fn run(config: Config, listeners: Listeners, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    run_with_clock(config, listeners, shutdown, Arc::new(worklist::SystemClock)).await
}

/// [`run`] on a given clock.
pub async fn run_with_clock(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn worklist::Clock>,
) -> anyhow::Result<()> {
    // the certificate is read before anything else: a wrong path stops the start at once
    let tls_files = config.tls_files()?;
    let audit_syslog = config.audit_syslog()?;
    let https = tls_files.as_ref().map(readhub_tls::https).transpose().context("HTTPS cannot start")?;
    let dicom_tls = match (&tls_files, &listeners.dimse_tls) {
        (Some(files), Some(_)) => Some(readhub_tls::dicom(files).context("DICOM TLS cannot start")?),
        _ => None,
    };
    config.ecg_critical.check().map_err(anyhow::Error::msg)?;
    // before anything is counted: the process's one metrics recorder (/metrics)
    viewer_api::ops::recorder();
    let (mut storage, worklist, consortium) = open_with_clock(&config, clock).await?;
    // in front of S3: acknowledged from this node's disk, uploaded after (a CLI command
    // writes to the store directly: it does not stay to upload)
    if let Some(dir) = config.receive_buffer()? {
        storage.blobs = storage.blobs.with_receive_buffer(&dir).context("the receive buffer cannot be opened")?;
    }
    tracing::info!(
        database = %storage::db::redact_url(&config.database_url()?),
        objects = ?storage.blobs,
        "storage ready"
    );
    // before anything is received: every staging file now is an upload a stop or crash
    // cut off (later, the hourly sweep takes those older than 10 minutes)
    let blobs = storage.blobs.clone();
    tokio::task::spawn_blocking(move || blobs.sweep_staging(Duration::ZERO)).await.context("staging sweep")?;
    if worklist.count_admins().await? == 0 {
        tracing::warn!(
            "no admin account yet. Create one with: echo 'A-GOOD-PASSWORD' | readhub user add admin --role admin --password-stdin \
             / 尚无管理员账号，请用上面的命令创建"
        );
    }
    let dimse_addr = listeners.dimse.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let dimse_tls_addr = listeners.dimse_tls.as_ref().map(|l| l.local_addr()).transpose()?;
    let dimse_tls_addr = dimse_tls_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    let hl7_addr = listeners.hl7.as_ref().map(|l| l.local_addr()).transpose()?.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(dimse.addr = %dimse_addr, dimse.tls_addr = %dimse_tls_addr, dimse.ae_title = %config.ae_title,
        http.addr = %http_addr, http.tls = https.is_some(), hl7.addr = %hl7_addr, "readhub listening");
    if https.is_none() && !http_addr.ip().is_loopback() {
        tracing::warn!(http.addr = %http_addr,
            "HTTP is served without TLS on a non-loopback address: passwords, reports and images cross the network \
             in clear text. Set tls_cert_file and tls_key_file (README: HTTPS) / HTTP 未加密且对外开放，请配置 TLS 证书");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    };

    // ingest → worklist: storage writes each arrival with its index row; one consumer
    // applies them, woken by every acknowledgement and on a tick (retries, other nodes)
    let node = config.node_name()?;
    worklist.recover_transfers(&node).await.context("cannot recover the transfers of the last run")?;
    let transfers = storage::Transfers::new(node.clone());
    let wake = Arc::new(Notify::new());
    // the consumer stops after the listeners, so the last instances are applied too
    let (consumer_stop, consumer_stop_rx) = watch::channel(false);
    let consumer = tokio::spawn(consume_arrivals(worklist.clone(), wake.clone(), consumer_stop_rx));
    // the receive buffer's uploads: they stop after the listeners, so the last instances
    // acknowledged go up too (within the drain)
    let (uploads_stop, uploads_stop_rx) = watch::channel(false);
    let receiving = {
        let st = storage.clone();
        move || st.receiving()
    };
    let uploads = storage
        .blobs
        .receive_buffer()
        .map(|b| tokio::spawn(b.clone().run(storage.blobs.inner().clone(), uploads_stop_rx, receiving)));

    // jobs that run once per cluster run on the node holding their lease (storage::lease)
    let lease = |job| storage::lease::Lease::new(storage.db.clone(), job, node.clone());
    // the sites' webhooks (critical results, quality rejections), from the durable outbox
    let notifier = tokio::spawn(notify::run(worklist.clone(), lease(ClusterJob::Webhooks), stop_rx.clone()));

    // ready promotion, assignment, SLA clocks, escalation, overdue orders: on one node of the
    // cluster (their conditional UPDATEs would make two safe, but not two alerts' worth of
    // work); the planner's sweep is of this node's own disk, so every node runs that
    let wl = worklist.clone();
    let mut ticker_stop = stop_rx.clone();
    let blobs = storage.blobs.clone();
    let mut ticker_lease = lease(ClusterJob::Ticker);
    let (ticker_db, ticker_node) = (storage.db.clone(), node.clone());
    let node_timeout = Duration::from_secs(config.node_timeout_secs.max(10));
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut planner = tokio::time::interval(Duration::from_secs(3600));
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                // every node says it is alive; the ticker's node ends the transfers of nodes
                // that stopped saying so (they died mid-association)
                _ = beat.tick() => {
                    // (SQLite is one node's database: nobody to tell, and a commit saved)
                    if ticker_db.backend() == storage::Backend::Sqlite {
                        continue;
                    }
                    let now = storage::now_ms();
                    if let Err(e) = storage::lease::heartbeat(&ticker_db, &ticker_node, now).await {
                        tracing::warn!(error = %e, "cannot write this node's heartbeat");
                    }
                    if !ticker_lease.held(now).await {
                        continue;
                    }
                    if let Err(e) = wl.end_transfers_of_lapsed_nodes(&ticker_node, node_timeout).await {
                        tracing::warn!(error = %e, "ending the transfers of lapsed nodes failed");
                    }
                }
                _ = minute.tick() => {
                    if !ticker_lease.held(storage::now_ms()).await {
                        continue;
                    }
                    match wl.flag_overdue_orders(wl.now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(orders = n, "orders without their study flagged to their sites"),
                        Err(e) => tracing::warn!(error = %e, "flagging overdue orders failed"),
                    }
                }
                _ = planner.tick() => {
                    wl.db.optimize().await;
                    let blobs = blobs.clone();
                    let _ = tokio::task::spawn_blocking(move || blobs.sweep_staging(STAGING_MAX_AGE)).await;
                }
                _ = tick.tick() => {
                    if !ticker_lease.held(storage::now_ms()).await {
                        continue;
                    }
                    if let Err(e) = wl.promote_ready(wl.now()).await {
                        tracing::warn!(error = %e, "promoting ready items failed");
                    }
                    match wl.auto_assign_tick().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(assigned = n, "auto-assigned"),
                        Err(e) => tracing::warn!(error = %e, "auto-assign failed"),
                    }
                    match wl.sla_tick().await {
                        Ok(t) if t.breached > 0 || t.leases_expired > 0 || t.critical_escalated > 0 => {
                            metrics::counter!("readhub_sla_breaches_total").increment(t.breached);
                            metrics::counter!("readhub_critical_escalations_total").increment(t.critical_escalated);
                            tracing::info!(breached = t.breached, leases_expired = t.leases_expired,
                                critical_escalated = t.critical_escalated, "SLA tick")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "SLA tick failed"),
                    }
                }
                _ = ticker_stop.changed() => if *ticker_stop.borrow() { break },
            }
        }
    });

    // the audit trail's writer: every request and association queues its event here
    if let Some(s) = &audit_syslog {
        tracing::info!(audit.syslog = %s.target, "the audit trail is also forwarded as DICOM audit messages");
    }
    let (audit_log, audit_writer) = audit::AuditLog::start_with(storage.db.clone(), audit_syslog);
    let gateway = tokio::spawn(dicom_gateway::run(
        dicom_gateway::Listeners { plain: listeners.dimse, tls: listeners.dimse_tls.zip(dicom_tls) },
        storage.clone(),
        config.gateway(consortium),
        dicom_gateway::Handover {
            transfers: transfers.clone(),
            wake: wake.clone(),
            audit: audit_log.clone(),
            worklist: Arc::new(mwl_source::Orders(worklist.clone())),
        },
        stopped(stop_rx.clone()),
    ));
    // orders from the sites' HIS (HL7 v2 over MLLP), when configured
    let hl7 = listeners.hl7.map(|l| {
        let us = hl7::Us { application: "READHUB".into(), facility: config.ae_title.clone(), utc_offset_hours: config.utc_offset_hours };
        tokio::spawn(hl7::mllp::serve(l, worklist.clone(), audit_log.clone(), hl7::mllp::Config { us }, stopped(stop_rx.clone())))
    });
    let state = viewer_api::AppState::new(storage.clone(), worklist.clone(), transfers.clone(), audit_log.clone(), config.http());
    // ECGs: measured and checked against the critical criteria; watched folders scanned
    let ecg_work = tokio::spawn(ecg_jobs::run(
        state.clone(),
        config.ecg_watch.clone(),
        Duration::from_secs(config.ecg_watch_interval_secs.max(1)),
        config.node_name()?.to_string(),
        stop_rx.clone(),
    ));
    // signed reports to the sites' HIS, FHIR server and PACS, from the durable outbox
    let results = tokio::spawn(results_out::run(
        state.clone(),
        results_out::Sender { node: config.node_name()?.to_string(), ae_title: config.ae_title.clone(), utc_offset_hours: config.utc_offset_hours },
        stop_rx.clone(),
    ));
    // thumbnails and previews, made in the background after ingest (never on the
    // acknowledgement path) and kept beside the instances
    let renders = config
        .prerender
        .then(|| tokio::spawn(viewer_api::renditions::run(state.clone(), stop_rx.clone())));
    let app = viewer_api::router(state);
    let mut http = tokio::spawn(http::serve(listeners.http, app, https, stopped(stop_rx.clone())));
    // Graceful, but bounded: a client that stopped reading a large response (a WADO-RS
    // retrieve on a dead VPN link) must not keep the hub from stopping.
    let stop = stopped(stop_rx.clone());
    let drain_limit = async move {
        stop.await;
        tokio::time::sleep(HTTP_DRAIN).await;
    };
    let http_result = tokio::select! {
        r = &mut http => r.map_err(std::io::Error::other),
        () = drain_limit => {
            tracing::warn!(after = ?HTTP_DRAIN, "HTTP connections still open after the stop: closing them");
            http.abort();
            Ok(())
        }
    };
    let _ = gateway.await;
    let _ = ecg_work.await;
    let _ = results.await;
    if let Some(r) = renders {
        let _ = r.await;
    }
    if let Some(h) = hl7 {
        let _ = h.await;
    }
    // what the last requests and associations did is in the trail before the database closes
    // (the writer ends once the last handle, held by the router, is gone; the flush covers
    // a router an aborted connection task still holds)
    audit_log.flush().await;
    drop(audit_log);
    let _ = tokio::time::timeout(Duration::from_secs(5), audit_writer).await;
    // what the last associations stored is applied before the database closes
    let _ = consumer_stop.send(true);
    let _ = consumer.await;
    let _ = uploads_stop.send(true);
    if let Some(u) = uploads {
        let _ = u.await;
    }
    let _ = ticker.await;
    let _ = notifier.await;
    // another node takes this node's cluster jobs at once, not after the lease lapses
    if let Err(e) = storage::lease::release_all(&storage.db, &node).await {
        tracing::warn!(error = %e, "cannot release this node's cluster leases; they lapse in {:?}", storage::lease::LEASE_TTL);
    }
    storage.db.close().await;
    tracing::info!("readhub stopped");
    http_result.context("HTTP server failed")
}

/// The arrival consumer loop: apply arrivals when woken (an acknowledgement) or every
/// half second (arrivals postponed after an error, or written by another node), until the
/// stop; then once more, so nothing acknowledged waits for the next start.
/// How often the consumer applies arrivals at most while they keep coming: each round is a
/// transaction (an fsync) that holds SQLite's one writer lock, so applying after every
/// acknowledged CT slice took a commit per slice away from ingest; the first arrival after a
/// quiet spell is applied at once (a film is in the queue without delay).
const ARRIVALS_ROUND: Duration = Duration::from_millis(100);

async fn consume_arrivals(wl: Worklist, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_round = tokio::time::Instant::now() - ARRIVALS_ROUND;
    loop {
        let stopping = tokio::select! {
            _ = wake.notified() => false,
            _ = tick.tick() => false,
            _ = stop.changed() => *stop.borrow(),
        };
        if !stopping {
            // a burst: gather it into one round
            tokio::time::sleep_until(last_round + ARRIVALS_ROUND).await;
        }
        last_round = tokio::time::Instant::now();
        // a full round means there may be more: go on at once
        loop {
            match wl.consume_arrivals().await {
                Ok(n) if n >= worklist::arrivals::PER_CALL => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "applying arrivals to the worklist failed; will retry");
                    break;
                }
            }
        }
        if stopping {
            break;
        }
    }
}
