//! readhub's DICOM gateway: a C-ECHO / C-STORE SCP for community modalities.
//!
//! Per association: **negotiate** (calling AE title must belong to a registered site; SOP
//! classes and transfer syntaxes from [`syntaxes`]) → **receive** (P-DATA streamed straight
//! into a [`storage::InstanceWriter`], never buffered whole) → **persist** (`finish`: durable
//! blob + committed index) → **respond** (C-STORE-RSP with the real status: success only
//! when durable; 0xA700/0xA900/0xC000 with an Error Comment otherwise, and the association
//! stays open). It depends on `storage` only: what it stores is handed to the worklist by
//! storage's durable arrival queue (`storage::arrival`), in the same transaction as the
//! index row; the gateway only wakes the consumer and ends its transfer.

mod admission;
mod association;
pub mod commitment;
pub mod dimse;
pub mod export;
mod find;
pub mod mwl;
pub mod qr;
pub mod retrieve;
pub mod syntaxes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use storage::Storage;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::Instrument;

pub use association::AeAccess;
pub use readhub_tls::rustls::ServerConfig as TlsConfig;

/// Where the gateway listens: the plain DICOM port, and optionally a DICOM TLS port with
/// its TLS configuration. Both share one set of association slots.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, Arc<TlsConfig>)>,
}

/// Gateway settings (a section of readhub's config).
#[derive(Debug, Clone)]
pub struct Config {
    /// Our AE title.
    pub ae_title: String,
    /// Register unknown calling AE titles as new sites on first contact (first install only).
    pub open_enrollment: bool,
    /// The consortium sites enrolled that way join.
    pub enrollment_consortium_id: i64,
    /// A peer silent for this long (mid-transfer or idle) is aborted.
    pub peer_timeout: Duration,
    /// Largest P-DATA PDU we accept.
    pub max_pdu_length: u32,
    /// Associations served at once; beyond it a request gets A-ASSOCIATE-RJ (transient,
    /// local limit exceeded).
    pub max_associations: usize,
    /// Associations one calling AE title may hold at once (one site cannot take them all).
    pub max_associations_per_ae: usize,
    /// A connection must send its A-ASSOCIATE-RQ within this long, or it is closed.
    pub association_request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ae_title: "READHUB".into(),
            open_enrollment: false,
            enrollment_consortium_id: 1,
            peer_timeout: Duration::from_secs(60),
            max_pdu_length: 256 * 1024,
            max_associations: 64,
            max_associations_per_ae: 16,
            association_request_timeout: Duration::from_secs(10),
        }
    }
}

/// How the gateway hands what it stored over: each association is a transfer (its
/// arrivals are written by storage with the index rows); `wake` tells the worklist's
/// consumer that arrivals are waiting.
#[derive(Debug, Clone)]
pub struct Handover {
    pub transfers: Arc<storage::Transfers>,
    pub wake: Arc<Notify>,
    /// each association (and each refused one) goes into the audit trail
    pub audit: audit::AuditLog,
    /// where modality worklist queries are answered (the sites' open orders)
    pub worklist: Arc<dyn mwl::WorklistSource>,
}

/// Accept associations on the listeners until `shutdown` resolves; then wait for the open
/// associations to finish their current work.
pub async fn run(
    listeners: Listeners,
    storage: Storage,
    config: Config,
    handover: Handover,
    shutdown: impl Future<Output = ()>,
) {
    let config = Arc::new(config);
    let admission = Arc::new(admission::Admission::new(
        config.max_associations,
        config.max_associations_per_ae,
        config.association_request_timeout,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    let Listeners { plain, tls } = listeners;
    let (tls_listener, tls_config) = match tls {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    loop {
        let accept_tls = async {
            match &tls_listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        let (accepted, over_tls) = tokio::select! {
            _ = &mut shutdown => break,
            a = plain.accept() => (a, false),
            a = accept_tls => (a, true),
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // the TLS configuration, for a connection to the TLS port
        let tls = tls_config.clone().filter(|_| over_tls);
        next_id += 1;
        let id = next_id;
        let handshake = admission.handshake(id);
        let _ = socket.set_nodelay(true);
        let storage = storage.clone();
        let config = config.clone();
        let handover = handover.clone();
        let admission = admission.clone();
        let span = tracing::info_span!("association", dimse.id = id, dimse.peer = %peer, dimse.tls = over_tls, dimse.calling_ae = tracing::field::Empty, dimse.transfer = tracing::field::Empty);
        tasks.spawn(
            async move {
                let _open = OpenAssociation::count();
                let mut socket = socket;
                if let Some(tls) = tls {
                    // admitted inside: the request is behind the TLS handshake
                    return association::serve_tls(socket, tls, handshake, &admission, storage, &config, &handover).await;
                }
                match admission.admit(&mut socket, handshake).await {
                    admission::Verdict::Serve(_admitted) => {
                        association::serve(socket, storage, &config, &handover).await
                    }
                    admission::Verdict::Refused(why) => tracing::warn!(%why, "association refused"),
                }
            }
            .instrument(span),
        );
        // reap finished tasks so the set does not grow without bound
        while tasks.try_join_next().is_some() {}
    }
    // close the port first: a modality trying now is refused at once (and retries later,
    // or elsewhere) instead of connecting to a hub that will never answer it
    drop(plain);
    drop(tls_listener);
    tracing::info!("DICOM listener closed; waiting for {} open associations", tasks.len());
    while tasks.join_next().await.is_some() {}
}

/// One connection on the DICOM ports, counted in `readhub_dicom_associations_open` while it
/// lasts (however it ends).
struct OpenAssociation;

impl OpenAssociation {
    fn count() -> Self {
        metrics::gauge!("readhub_dicom_associations_open").increment(1.0);
        OpenAssociation
    }
}

impl Drop for OpenAssociation {
    fn drop(&mut self) {
        metrics::gauge!("readhub_dicom_associations_open").decrement(1.0);
    }
}
