//! Encrypted links, against the real binary: HTTPS with a certificate from a throwaway CA
//! (made here with openssl), plain HTTP on that port refused; DICOM over TLS with DCMTK
//! `echoscu +tls` / `storescu +tls`, with and without a client certificate; a site bound to
//! its modality's certificate refuses its AE title on the plain port and over TLS with any
//! other certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::data;
use super::served::{cli, serve};

/// Run openssl in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed: run the README's test command");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA (`ca.crt`), the hub's certificate for 127.0.0.1/localhost (`hub.crt`,
/// `hub.key`), two modalities' client certificates signed by the CA (`moda`, `modb`) and
/// one self-signed (`rogue`).
fn make_pki(dir: &Path) {
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=readhub test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    let leaf = |name: &str, cn: &str, ext: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={cn}")]);
        openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", &format!("{name}.crt"), "-days", "2", "-extfile", &format!("{name}.ext")]);
    };
    // the hub's certificate serves its listeners and identifies it to the audit repository
    leaf("hub", "localhost", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    leaf("moda", "MODA", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    leaf("modb", "MODB", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=MODA"]);
}

/// A DCMTK tool over TLS: `client` is the key/certificate pair to present (None:
/// anonymous TLS); the hub's certificate is verified against the test CA.
async fn dcmtk_tls(tool: &str, dir: &Path, client: Option<&str>, calling: &str, port: u16, files: &[PathBuf]) -> (bool, String) {
    let mut c = tokio::process::Command::new(tool);
    match client {
        Some(name) => c.args(["+tls", &format!("{name}.key"), &format!("{name}.crt")]),
        None => c.arg("+tla"),
    };
    c.args(["+cf", "ca.crt", "-to", "10", "-aet", calling, "-aec", "READHUB", "127.0.0.1", &port.to_string()])
        .args(files)
        .current_dir(dir);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("DCMTK finished")
        .expect("DCMTK (echoscu/storescu) must be installed: run the README's test command");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn fingerprint(dir: &Path, name: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &format!("{name}.crt")])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().rsplit('=').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_only_with_hsts_and_secure_cookies() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["user", "add", "admin", "--role", "admin", "--password-stdin"], Some("admin-password-1"));
    let cert = pki.path().join("hub.crt");
    let key = pki.path().join("hub.key");
    let ca_file = pki.path().join("ca.crt");
    // the hospital's audit record repository: syslog over TLS (RFC 5425), requiring a
    // client certificate of the CA (the hub's own)
    let files = readhub_tls::Files { cert: cert.clone(), key: key.clone(), client_ca: Some(ca_file.clone()) };
    let acceptor = tokio_rustls::TlsAcceptor::from(readhub_tls::dicom(&files).unwrap());
    let repository = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let syslog = format!("tls://127.0.0.1:{}", repository.local_addr().unwrap().port());
    let received = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (tcp, _) = repository.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.expect("the hub presents a certificate of the CA");
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&bytes).contains("110122") {
            match tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        bytes
    });
    let hub = serve(
        dir.path(),
        &[
            ("READHUB_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("READHUB_TLS_KEY_FILE", key.to_str().unwrap()),
            ("READHUB_AUDIT_SYSLOG_ADDR", &syslog),
            ("READHUB_AUDIT_SYSLOG_CA_FILE", ca_file.to_str().unwrap()),
        ],
    )
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path().join("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();

    // the viewer over HTTPS, with HSTS and the other security headers
    let r = client.get(format!("https://{}/", hub.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert!(r.headers().contains_key("content-security-policy"));
    // HTTP/2 is offered (ALPN) and works
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "browsers get HTTP/2 over TLS");

    // the session cookie is Secure
    let r = client
        .post(format!("https://{}/api/login", hub.http))
        .json(&serde_json::json!({ "username": "admin", "password": "admin-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // the login went to the audit repository over TLS, as an octet-counted RFC 5424 frame
    // carrying a DICOM audit message (User Authentication, Login)
    let bytes = tokio::time::timeout(Duration::from_secs(30), received).await.expect("syslog frames").unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let mut rest = text.as_str();
    let mut frames = Vec::new();
    while let Some((len, tail)) = rest.split_once(' ') {
        let len: usize = len.parse().unwrap_or_else(|_| panic!("not an octet count: {len:?} in {text}"));
        frames.push(&tail[..len]);
        rest = &tail[len..];
    }
    let login = frames.iter().find(|f| f.contains("110122")).unwrap_or_else(|| panic!("no login message: {text}"));
    assert!(login.starts_with("<85>1 ") && login.contains("IHE+RFC-3881") && login.contains("UserID=\"admin\""), "{login}");

    // retrieve URLs handed out are https://
    let r = client.get(format!("https://{}/dicom-web/studies", hub.http)).basic_auth("admin", Some("admin-password-1")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // plain HTTP on the HTTPS port: a 400 naming https://, nothing served
    let r = reqwest::get(format!("http://{}/api/session", hub.http)).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("https://") && text.contains("HTTPS"), "{text}");

    // a client that does not trust the hub's CA gets no connection (no silent fallback)
    assert!(reqwest::Client::new().get(format!("https://{}/", hub.http)).send().await.is_err());

    // TLS 1.1 is never negotiated (rustls offers 1.2 and 1.3 only)
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &hub.http, "-tls1_1"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() || text.contains("Cipher is (NONE)"), "TLS 1.1 handshake succeeded: {text}");

    // and the hub still answers
    assert_eq!(client.get(format!("https://{}/api/session", hub.http)).send().await.unwrap().status(), 200);
    hub.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dicom_tls_with_client_certificates_and_site_binding() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    make_pki(p);
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["site", "add", "clinic-a", "--ae", "MODA"], None);
    cli(dir.path(), &["site", "add", "clinic-b", "--ae", "MODB"], None);
    cli(dir.path(), &["user", "add", "admin", "--role", "admin", "--password-stdin"], Some("admin-password-1"));
    let path = |f: &str| p.join(f).to_str().unwrap().to_string();
    let (cert, key, ca) = (path("hub.crt"), path("hub.key"), path("ca.crt"));
    let hub = serve(
        dir.path(),
        &[
            ("READHUB_TLS_CERT_FILE", &cert),
            ("READHUB_TLS_KEY_FILE", &key),
            ("READHUB_DICOM_TLS_ADDR", "127.0.0.1:0"),
            ("READHUB_TLS_CLIENT_CA_FILE", &ca),
            ("READHUB_MAX_ASSOCIATIONS", "4"),
        ],
    )
    .await;
    let tls_port = hub.dimse_tls_port.expect("the DICOM TLS port is logged");
    let file = data("pydicom-data/RG1_UNCR.dcm");

    // a modality with a certificate of the CA: C-ECHO and C-STORE over TLS
    let (ok, out) = dcmtk_tls("echoscu", p, Some("moda"), "MODA", tls_port, &[]).await;
    assert!(ok, "echoscu +tls: {out}");
    let (ok, out) = dcmtk_tls("storescu", p, Some("moda"), "MODA", tls_port, std::slice::from_ref(&file)).await;
    assert!(ok, "storescu +tls: {out}");

    // connections that never start their TLS handshake hold no association slot: with
    // twice max_associations of them open, modalities still get in, over TLS and plain
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, out) = dcmtk_tls("echoscu", p, Some("moda"), "MODA", tls_port, &[]).await;
    assert!(ok, "echoscu +tls beside 8 silent TLS connections: {out}");
    assert!(super::echo(hub.dimse_port, "MODB").await.0, "plain C-ECHO beside 8 silent TLS connections");
    drop(silent);

    // client certificates are required: anonymous TLS and a self-signed certificate fail
    let (ok, out) = dcmtk_tls("echoscu", p, None, "MODA", tls_port, &[]).await;
    assert!(!ok, "anonymous TLS accepted although tls_client_ca_file is set: {out}");
    let (ok, out) = dcmtk_tls("echoscu", p, Some("rogue"), "MODA", tls_port, &[]).await;
    assert!(!ok, "a certificate of no trusted CA accepted: {out}");
    // plain DICOM to the TLS port fails too
    let out = tokio::process::Command::new("echoscu")
        .args(["-to", "5", "-aet", "MODA", "-aec", "READHUB", "127.0.0.1", &tls_port.to_string()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());

    // bind clinic-a to MODA's certificate (by file) and clinic-b to MODB's (by fingerprint)
    cli(dir.path(), &["site", "bind-cert", "clinic-a", "--cert", &path("moda.crt")], None);
    cli(dir.path(), &["site", "bind-cert", "clinic-b", "--fingerprint", &fingerprint(p, "modb")], None);
    let (ok, out) = super::readhub_cli(dir.path(), None, &["site", "bind-cert", "clinic-b", "--cert", &path("moda.crt")], None);
    assert!(!ok && out.contains("another site"), "one certificate, two sites: {out}");
    let (ok, list) = super::readhub_cli(dir.path(), None, &["site", "list"], None);
    assert!(ok && list.contains(&fingerprint(p, "moda").replace(':', "").to_lowercase()), "{list}");

    // now the stolen AE title alone stores nothing: refused on the plain port...
    let plain = tokio::process::Command::new("storescu")
        .args(["-to", "10", "-aet", "MODA", "-aec", "READHUB", "127.0.0.1", &hub.dimse_port.to_string()])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&plain.stdout).to_string() + &String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && text.contains("Calling AE Title Not Recognized"), "plain DICOM from a bound site: {text}");
    // ...and over TLS with another site's (valid) certificate
    let (ok, out) = dcmtk_tls("storescu", p, Some("modb"), "MODA", tls_port, std::slice::from_ref(&file)).await;
    assert!(!ok, "MODA's AE title with MODB's certificate was accepted: {out}");
    // with its own certificate it still works
    let (ok, out) = dcmtk_tls("storescu", p, Some("moda"), "MODA", tls_port, std::slice::from_ref(&file)).await;
    assert!(ok, "storescu +tls with the bound certificate: {out}");
    let (ok, out) = dcmtk_tls("echoscu", p, Some("modb"), "MODB", tls_port, &[]).await;
    assert!(ok, "MODB with its bound certificate: {out}");

    // the admin API shows and changes the same bindings
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(p.join("ca.crt")).unwrap()).unwrap()])
        .build()
        .unwrap();
    let sites: serde_json::Value = https.get(format!("https://{}/api/admin/sites", hub.http)).basic_auth("admin", Some("admin-password-1")).send().await.unwrap().json().await.unwrap();
    let b = sites.as_array().unwrap().iter().find(|s| s["name"] == "clinic-b").unwrap();
    let modb = fingerprint(p, "modb").replace(':', "").to_lowercase();
    assert_eq!(b["certificates"], serde_json::json!([modb]), "{sites}");
    let r = https
        .delete(format!("https://{}/api/admin/sites/clinic-b/certificates/{}", hub.http, fingerprint(p, "modb")))
        .basic_auth("admin", Some("admin-password-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(super::echo(hub.dimse_port, "MODB").await.0, "clinic-b unbound: plain DICOM again");
    let r = https
        .post(format!("https://{}/api/admin/sites/clinic-b/certificates", hub.http))
        .basic_auth("admin", Some("admin-password-1"))
        .json(&serde_json::json!({ "fingerprint": fingerprint(p, "modb") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!super::echo(hub.dimse_port, "MODB").await.0, "clinic-b bound again by the API");

    // unbinding lets plain DICOM in again
    cli(dir.path(), &["site", "unbind-cert", "clinic-a", "--fingerprint", &fingerprint(p, "moda")], None);
    let (ok, out) = super::echo(hub.dimse_port, "MODA").await;
    assert!(ok, "plain C-ECHO after unbinding: {out}");

    // what MODA stored over TLS is clinic-a's, once
    let r = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(p.join("ca.crt")).unwrap()).unwrap()])
        .build()
        .unwrap()
        .get(format!("https://{}/dicom-web/instances", hub.http))
        .basic_auth("admin", Some("admin-password-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: serde_json::Value = r.json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    hub.kill9().await;
}
