//! HTTP connections have time and count bounds: request headers that never finish are cut
//! off, and the hub answers others meanwhile.

use super::*;

/// 50 connections that send half a request line and stop (a slowloris) are closed by the
/// hub once the header timeout passes; a real request is answered while they hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_request_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = Hub::start(Backend::Sqlite).await;
    let addr = hub.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /api/session HTTP/1.1\r\nHost: readhub\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let r = hub.http().get(format!("{}/api/session", hub.base)).send().await.unwrap();
    assert_eq!(r.status(), 200, "answered beside 50 hanging requests");
    let limit = readhub::http::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let closed = futures::future::join_all(slow.iter_mut().map(|s| async move {
        let mut buf = [0u8; 256];
        // closed (EOF or reset), possibly after a 408 the server writes first
        loop {
            match tokio::time::timeout(limit, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }))
    .await;
    assert!(closed.iter().all(|c| *c), "every unfinished request is cut off within {limit:?}");
    hub.stop().await;
}
