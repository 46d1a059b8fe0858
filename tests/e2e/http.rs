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
        for directive in ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        // WebAssembly (the viewer's JPEG-LS codec) may be compiled; JavaScript may not be
        // made from strings, nor run inline
        assert!(!csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    hub.stop().await;
}

/// A state-changing request that carries the session cookie must come from the hub's own
/// pages: one another page made (another port of the same host is `same-site`, not
/// `same-origin`; or an `Origin` that is not the hub's) is refused 403. The same request
/// from the hub's page, or with a bearer token (no cookie for a browser to attach), passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_from_other_pages_are_refused() {
    let hub = Hub::start(Backend::Sqlite).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let client = reqwest::Client::new();
    let r = client.post(format!("{}/api/login", hub.base)).json(&json!({ "username": reader.0, "password": reader.1 })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let token = cookie.split_once('=').unwrap().1.to_string();
    let own = hub.base.clone();
    let claim = format!("{}/api/worklist/999999/claim", hub.base);
    let with = |headers: &[(&str, &str)], bearer: bool| {
        let mut req = client.post(&claim);
        req = if bearer { req.bearer_auth(&token) } else { req.header("cookie", &cookie) };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let other = "http://127.0.0.1:1";
    let refused = [
        vec![("sec-fetch-site", "same-site"), ("origin", other)],
        vec![("sec-fetch-site", "cross-site"), ("origin", "http://evil.example")],
        vec![("origin", other)],
    ];
    for headers in &refused {
        let r = with(headers, false).await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
    }
    // the hub's own page, a client that is no browser page, a bearer token: not refused as
    // cross-site (the item does not exist: 404)
    for (headers, bearer) in [
        (vec![("sec-fetch-site", "same-origin"), ("origin", own.as_str())], false),
        (vec![("origin", own.as_str())], false),
        (vec![], false),
        (vec![("sec-fetch-site", "cross-site"), ("origin", other)], true),
    ] {
        let r = with(&headers, bearer).await.unwrap();
        assert_eq!(r.status(), 404, "{headers:?} bearer {bearer}");
    }
    // reading is not changing: a GET with the cookie from anywhere is answered (CORS keeps
    // its answer from other pages)
    let r = client.get(format!("{}/api/worklist", hub.base)).header("cookie", &cookie).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // nor can another page sign the reader out, or sign the browser in as someone else
    let r = client.post(format!("{}/api/logout", hub.base)).header("cookie", &cookie).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(format!("{}/api/login", hub.base))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "http://evil.example")
        .json(&json!({ "username": reader.0, "password": reader.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(client.get(format!("{}/api/me", hub.base)).header("cookie", &cookie).send().await.unwrap().status(), 200, "still signed in");
    hub.stop().await;
}

/// Five wrong passwords for one name lock it: the sixth attempt, even with the right
/// password, is refused 429 with Retry-After, on the login form and over HTTP Basic alike;
/// once the lock has passed the right password works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_wrong_passwords_lock_the_name() {
    let hub = Hub::start_with(Backend::Sqlite, |c| c.login_lock_secs = 3).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let client = reqwest::Client::new();
    let login = |password: String| {
        client.post(format!("{}/api/login", hub.base)).json(&json!({ "username": "rad1", "password": password })).send()
    };
    for n in 0..5 {
        let r = login(format!("wrong-{n}")).await.unwrap();
        assert_eq!(r.status(), 422, "attempt {n}: a wrong password");
    }
    let r = login(reader.1.clone()).await.unwrap();
    assert_eq!(r.status(), 429, "locked: even the right password is refused");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    let basic = client.get(format!("{}/api/worklist", hub.base)).basic_auth("rad1", Some(&reader.1)).send().await.unwrap();
    assert_eq!(basic.status(), 429, "HTTP Basic obeys the same lock");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(login(reader.1.clone()).await.unwrap().status(), 200, "the lock has passed");
    // a success forgets earlier failures: four more wrong ones do not lock
    for n in 0..4 {
        assert_eq!(login(format!("again-{n}")).await.unwrap().status(), 422);
    }
    assert_eq!(login(reader.1.clone()).await.unwrap().status(), 200);
    // a name of 8 KB (no account can have one) is refused without being kept anywhere
    let huge = "x".repeat(8 * 1024);
    let r = client.get(format!("{}/api/worklist", hub.base)).basic_auth(&huge, Some("pw")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    use sqlx::Row;
    let longest: Option<i64> =
        sqlx::query("SELECT MAX(LENGTH(username)) FROM login_failures").fetch_one(hub.storage.db.pool()).await.unwrap().get(0);
    assert!(longest.unwrap_or(0) <= 64, "a {longest:?}-character name was kept");
    assert!(hub.get(&reader, "/dicom-web/studies").await.status().is_success(), "the hub still answers");
    hub.stop().await;
}

/// A login session ends after two hours unused, and after twelve hours whatever its use; a
/// request within the idle time keeps it alive. (Hand-set clock: no waiting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_end_when_idle_and_at_their_end() {
    let clock = worklist::ManualClock::new(storage::now_ms());
    let hub = Hub::start_clocked(Backend::Sqlite, clock.clone(), |_| {}).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let client = reqwest::Client::new();
    let login = || async {
        let r = client.post(format!("{}/api/login", hub.base)).json(&json!({ "username": reader.0, "password": reader.1 })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    };
    let status = |token: String| {
        let client = client.clone();
        let url = format!("{}/api/worklist", hub.base);
        async move { client.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    let token = login().await;
    // used every 110 minutes: alive for as long as that goes on, up to twelve hours
    for _ in 0..6 {
        clock.advance(Duration::from_secs(110 * 60));
        assert_eq!(status(token.clone()).await, 200);
    }
    clock.advance(Duration::from_secs(60 * 60)); // 12 h 0 min since login, used 1 h ago
    assert_eq!(status(token.clone()).await, 401, "ended at twelve hours");
    // unused for two hours: ended
    let token = login().await;
    clock.advance(Duration::from_secs(119 * 60));
    assert_eq!(status(token.clone()).await, 200);
    clock.advance(Duration::from_secs(121 * 60));
    assert_eq!(status(token.clone()).await, 401, "ended after two hours unused");
    hub.stop().await;
}

/// An admin disables an account: its open session, its bearer token and its cached HTTP
/// Basic credentials stop working at once, and it cannot sign in; enabled again, it can.
/// The last admin cannot be disabled. (The CLI: `cli::cli_disables_and_enables_an_account`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_account_is_shut_out_at_once() {
    let hub = Hub::start(Backend::Sqlite).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let reader = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let client = reqwest::Client::new();
    let login = |who: (String, String)| {
        let client = client.clone();
        let url = format!("{}/api/login", hub.base);
        async move { client.post(url).json(&json!({ "username": who.0, "password": who.1 })).send().await.unwrap() }
    };
    let r = login(reader.clone()).await;
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let bearer = |t: String| {
        let client = client.clone();
        let url = format!("{}/api/worklist", hub.base);
        async move { client.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(bearer(token.clone()).await, 200);
    assert_eq!(hub.get(&reader, "/api/worklist").await.status(), 200, "HTTP Basic, now cached");
    let put = |name: &str, disabled: bool| {
        let (client, url, admin) = (client.clone(), format!("{}/api/admin/users/{name}/disabled", hub.base), admin.clone());
        async move { client.put(url).basic_auth(admin.0, Some(admin.1)).json(&json!({ "disabled": disabled })).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put("rad1", true).await, 200);
    assert_eq!(bearer(token.clone()).await, 401, "the open session ended");
    assert_eq!(hub.get(&reader, "/api/worklist").await.status(), 401, "cached Basic credentials too");
    assert_eq!(login(reader.clone()).await.status(), 422, "cannot sign in");
    assert_eq!(put("admin", true).await, 409, "not the last admin");
    assert_eq!(put("rad1", false).await, 200);
    assert_eq!(login(reader.clone()).await.status(), 200, "enabled again");
    hub.stop().await;
}
