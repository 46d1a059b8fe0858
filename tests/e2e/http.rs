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

/// Security headers on every response: the web viewer's page and scripts, the API, an
/// error, DICOMweb, and the print page (whose policy allows its own stylesheet by hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_headers_on_every_response() {
    let hub = Hub::start(Backend::Sqlite).await;
    hub.site("Township-A", &["MODA"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let client = reqwest::Client::new();
    for (path, auth) in [("/", false), ("/app/app.js", false), ("/api/session", false), ("/api/worklist", false), ("/api/admin/sites", true), ("/dicom-web/studies", true)] {
        let mut req = client.get(format!("{}{path}", hub.base));
        if auth {
            req = req.basic_auth(&admin.0, Some(&admin.1));
        }
        let r = req.send().await.unwrap();
        let h = r.headers();
        let csp = h.get("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP")).to_str().unwrap();
        for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    hub.stop().await;
}
