//! TLS for readhub's listeners: the hub's certificate chain and private key (PEM files, as a
//! hospital CA or `openssl req` hands them out) made into rustls server configurations:
//! one for HTTPS (ALPN h2 and http/1.1) and one for the DICOM TLS listener (the DICOM Basic
//! TLS Secure Transport profile: TLS 1.2 or later, and, when a client CA is given, a client
//! certificate signed by it is required). TLS 1.0/1.1 and SSL are never offered (rustls has
//! none). It also names certificates by their SHA-256 fingerprint, which is how a site is
//! bound to the certificate its modalities present.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

pub use readhub_types::CertFingerprint as Fingerprint;
/// The rustls this crate configures (its `ServerConfig` is what the listeners take).
pub use rustls;

/// What went wrong reading the TLS files; each names the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the {what} {path} ({setting}): {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        setting: &'static str,
        reason: String,
    },
    #[error("the certificate and key do not make a TLS configuration: {0} (is the key the certificate's own?)")]
    Config(String),
}

/// The hub's certificate and key, and optionally the CA whose client certificates the
/// DICOM TLS listener requires.
#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Fingerprint::from_digest(Sha256::digest(der).into())
}

/// The fingerprint of the first certificate of a PEM file (a modality's client
/// certificate, to bind its site to).
pub fn fingerprint_of_file(path: &Path) -> Result<Fingerprint, Error> {
    let chain = certificates(path, "certificate", "--cert")?;
    Ok(fingerprint(&chain[0]))
}

fn certificates(
    path: &Path,
    what: &'static str,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |reason: String| Error::File {
        what,
        path: path.to_path_buf(),
        setting,
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(fail("no -----BEGIN CERTIFICATE----- block in it".into()));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let fail = |reason: String| Error::File {
        what: "private key",
        path: path.to_path_buf(),
        setting: "tls_key_file",
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| fail(format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}; an encrypted key must be decrypted first")))
}

fn builder() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
}

/// The HTTPS listener's configuration.
pub fn https(files: &Files) -> Result<Arc<ServerConfig>, Error> {
    let chain = certificates(&files.cert, "certificate", "tls_cert_file")?;
    let mut config = builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key(&files.key)?)
        .map_err(|e| Error::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DICOM TLS listener's configuration: the same certificate; a client certificate
/// signed by `client_ca` is required when one is given.
pub fn dicom(files: &Files) -> Result<Arc<ServerConfig>, Error> {
    let chain = certificates(&files.cert, "certificate", "tls_cert_file")?;
    let builder = builder();
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca, "client CA certificate", "tls_client_ca_file")? {
                roots.add(c).map_err(|e| Error::File {
                    what: "client CA certificate",
                    path: ca.clone(),
                    setting: "tls_client_ca_file",
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, private_key(&files.key)?)
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client configuration for the hub's own outgoing TLS (syslog to an audit record
/// repository): the peer must present a certificate of `ca` (PEM; `setting` names it in
/// errors), and the hub presents its own certificate when it has one (mutual TLS, as IHE
/// ATNA's secure nodes do).
pub fn client(ca: &Path, setting: &'static str, identity: Option<&Files>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca, "CA certificate", setting)? {
        roots
            .add(c)
            .map_err(|e| Error::File { what: "CA certificate", path: ca.to_path_buf(), setting, reason: e.to_string() })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let config = match identity {
        Some(files) => builder
            .with_client_auth_cert(certificates(&files.cert, "certificate", "tls_cert_file")?, private_key(&files.key)?)
            .map_err(|e| Error::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_typed_by_hand_are_normalized() {
        let f = fingerprint(b"x");
        let colons = f
            .as_str()
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(Fingerprint::parse(&colons), Some(f));
        assert_eq!(Fingerprint::parse("abc"), None);
        assert_eq!(Fingerprint::parse(&"g".repeat(64)), None);
    }

    #[test]
    fn a_missing_file_names_itself_and_its_setting() {
        let files = Files {
            cert: "/nonexistent/hub.pem".into(),
            key: "/nonexistent/hub.key".into(),
            client_ca: None,
        };
        let e = https(&files).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/hub.pem") && e.contains("tls_cert_file"),
            "{e}"
        );
    }
}
