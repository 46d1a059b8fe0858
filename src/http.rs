//! The HTTP listener: axum's router served by hyper with the time and count bounds that
//! `axum::serve` leaves unset. A client must send its request headers within
//! [`HEADER_READ_TIMEOUT`] (hyper only enforces this with a timer, which `axum::serve` does
//! not give it: connections that never finished their headers stayed open for ever and,
//! enough of them, took every file descriptor of the process, DICOM's too). At most
//! [`max_connections`] connections are served at once, so HTTP never takes more than half
//! the process's file descriptors; beyond that a new one is closed at once. On stop the listener closes first, then open connections finish their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Request headers must arrive within this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once, at most.
pub const MAX_CONNECTIONS: usize = 4096;

/// Connections served at once here: [`MAX_CONNECTIONS`], or half the process's open-file
/// limit where that is lower (a service started with the common soft limit of 1,024), so
/// DICOM, the database and the object store always have descriptors left.
pub fn max_connections() -> usize {
    cap_for_limits(&std::fs::read_to_string("/proc/self/limits").unwrap_or_default())
}

/// The cap for a `/proc/self/limits` text (its soft "Max open files").
fn cap_for_limits(limits: &str) -> usize {
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    soft.map_or(MAX_CONNECTIONS, |n| (n / 2).clamp(16, MAX_CONNECTIONS))
}

/// Serve `app` on `listener` until `stop` resolves, then let open connections finish.
/// (Bounded from outside: the caller aborts this future when the drain takes too long,
/// which drops every connection task with it.)
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let limit = max_connections();
    let slots = Arc::new(Semaphore::new(limit));
    let mut connections = tokio::task::JoinSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // out of file descriptors, most likely: give the others time to close
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(http.peer = %peer, limit, "too many HTTP connections; closed");
            continue;
        };
        let builder = builder.clone();
        // the peer's address goes with each request (the login throttle counts by it)
        let client = viewer_api::ClientAddr(peer.ip());
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(app.clone(), move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(client);
            req
        }));
        let mut drain = drain_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = drain.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = drain_tx.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_keeps_half_the_file_descriptors_for_the_rest() {
        let limits = |soft: &str| format!("Limit                     Soft Limit           Hard Limit           Units\nMax open files            {soft:<20} 524288               files\n");
        assert_eq!(cap_for_limits(&limits("1024")), 512);
        assert_eq!(cap_for_limits(&limits("20000")), MAX_CONNECTIONS);
        assert_eq!(cap_for_limits(&limits("unlimited")), MAX_CONNECTIONS);
        assert_eq!(cap_for_limits(""), MAX_CONNECTIONS);
    }
}
