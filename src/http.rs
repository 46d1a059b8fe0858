//! The HTTP listener: axum's router served by hyper with the time and count bounds that
//! `axum::serve` leaves unset. A client must send its request headers within
//! [`HEADER_READ_TIMEOUT`] (hyper only enforces this with a timer, which `axum::serve` does
//! not give it: connections that never finished their headers stayed open for ever and,
//! enough of them, took every file descriptor of the process, DICOM's too). At most
//! [`max_connections`] connections are served at once, so HTTP never takes more than half
//! the process's file descriptors; beyond that a new one is closed at once. On stop the listener closes first, then open connections finish their requests.
//!
//! With a TLS configuration the listener speaks HTTPS only: the TLS handshake must finish
//! within the same header timeout, and a plain HTTP request gets a 400 saying to use
//! `https://` (as nginx answers one on its TLS port) instead of a dropped connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls::ServerConfig;

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

/// The answer to a plain HTTP request on the HTTPS port.
fn plain_http_on_tls_port() -> Vec<u8> {
    let body = "This port speaks HTTPS only: use https:// instead of http://\n此端口仅支持 HTTPS，请使用 https:// 访问\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serve `app` on `listener` until `stop` resolves, then let open connections finish.
/// (Bounded from outside: the caller aborts this future when the drain takes too long,
/// which drops every connection task with it.) `tls`: serve HTTPS only.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<ServerConfig>>, stop: impl Future<Output = ()>) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
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
        // a response goes out in several writes (headers, multipart parts): with Nagle on,
        // the last small write waited for the client's delayed ACK, 40 ms a response
        let _ = stream.set_nodelay(true);
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
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            macro_rules! serve_on {
                ($io:expr) => {{
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new($io), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = drain.changed() => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                }};
            }
            match tls {
                None => serve_on!(stream),
                Some(acceptor) => match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake(&acceptor, stream)).await {
                    Ok(Some(tls_stream)) => serve_on!(tls_stream),
                    Ok(None) => {}
                    Err(_) => tracing::debug!(http.peer = %peer, "no TLS handshake within the header timeout; closed"),
                },
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = drain_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// The TLS handshake of a new connection; a plain HTTP request is answered with a 400
/// naming `https://`. `None`: the connection is done with.
async fn handshake(acceptor: &tokio_rustls::TlsAcceptor, mut stream: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    // a TLS connection starts with a handshake record (content type 22)
    if stream.peek(&mut first).await.ok()? == 1 && first[0] != 0x16 {
        let _ = stream.write_all(&plain_http_on_tls_port()).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
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
