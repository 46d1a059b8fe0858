//! The audit trail, forwarded to a hospital's audit record repository as DICOM audit
//! messages (PS3.15 A.5, the IHE ATNA message format) in RFC 5424 syslog, one message per
//! row: over UDP (RFC 5426) or over TLS (RFC 5425: octet-counted frames; the repository's
//! certificate checked against a CA, and the hub's own presented when it has one). The database stays the record: forwarding is best
//! effort (a repository that is down or slow loses messages, counted in the log, never
//! slows a request).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use tokio::sync::mpsc;

use crate::Row;

/// Messages waiting to be sent at most; beyond, new ones are dropped and counted.
const QUEUE: usize = 8192;

/// A UDP datagram holds at most this much; a longer message is cut (RFC 5426 3.2 asks
/// receivers to take at least 480 bytes, and 2048 should be; IPv4 allows 65,507).
const MAX_DATAGRAM: usize = 60 * 1024;

/// Where the messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `udp://HOST:PORT`
    Udp(SocketAddr),
    /// `tls://HOST:PORT`, with the client configuration (trusted CA, the hub's identity)
    Tls { host: String, port: u16, config: Arc<ClientConfig> },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tls { host, port, .. } => write!(f, "tls://{host}:{port}"),
        }
    }
}

impl Target {
    /// `udp://HOST:PORT` (resolved once, at start) or `tls://HOST:PORT` (then `tls` must
    /// be given: the CA that signed the repository's certificate).
    pub fn parse(text: &str, tls: Option<Arc<ClientConfig>>) -> Result<Target, String> {
        if let Some(rest) = text.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            let addr = rest
                .to_socket_addrs()
                .map_err(|e| format!("audit_syslog_addr {text:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("audit_syslog_addr {text:?}: the host has no address"))?;
            return Ok(Target::Udp(addr));
        }
        if let Some(rest) = text.strip_prefix("tls://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("audit_syslog_addr {text:?}: tls://HOST:PORT"))?;
            let port = port.parse().map_err(|_| format!("audit_syslog_addr {text:?}: {port:?} is not a port"))?;
            let config = tls.ok_or_else(|| {
                format!("audit_syslog_addr {text:?}: syslog over TLS needs audit_syslog_ca_file (the CA of the repository's certificate)")
            })?;
            return Ok(Target::Tls { host: host.trim_matches(['[', ']']).to_string(), port, config });
        }
        Err(format!("audit_syslog_addr {text:?}: use udp://HOST:PORT or tls://HOST:PORT"))
    }
}

/// The sender's handle: rows go in, a task sends them.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    tx: mpsc::Sender<String>,
}

impl Forwarder {
    pub(crate) fn start(target: Target) -> Forwarder {
        let (tx, rx) = mpsc::channel::<String>(QUEUE);
        match target {
            Target::Udp(addr) => {
                tokio::spawn(send_udp(addr, rx));
            }
            Target::Tls { host, port, config } => {
                tokio::spawn(send_tls(host, port, config, rx));
            }
        }
        Forwarder { tx }
    }

    pub(crate) fn send(&self, message: String) {
        if self.tx.try_send(message).is_err() {
            tracing::warn!("audit syslog: the sender is behind; a message was dropped (the database keeps the row)");
        }
    }
}

async fn send_udp(addr: SocketAddr, mut rx: mpsc::Receiver<String>) {
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "audit syslog: cannot open a UDP socket; not forwarding"),
    };
    while let Some(msg) = rx.recv().await {
        let bytes = msg.as_bytes();
        let bytes = &bytes[..bytes.len().min(MAX_DATAGRAM)];
        if let Err(e) = socket.send_to(bytes, addr).await {
            tracing::warn!(error = %e, syslog = %addr, "audit syslog: a message was not sent");
        }
    }
}

/// How long connecting (TCP and TLS handshake) to the repository, or one write to it, may
/// take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection, kept open; re-made (after a pause that doubles up to a minute) when it
/// fails. Messages that come while it is down wait in the queue, or are dropped when it
/// is full.
async fn send_tls(host: String, port: u16, config: Arc<ClientConfig>, mut rx: mpsc::Receiver<String>) {
    use tokio::io::AsyncWriteExt;
    let connector = tokio_rustls::TlsConnector::from(config);
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.clone()) else {
        return tracing::error!(syslog.host = %host, "audit syslog: not a host name or address; not forwarding");
    };
    let mut conn = None;
    let mut pause = Duration::from_secs(1);
    while let Some(msg) = rx.recv().await {
        // RFC 5425 4.3: MSG-LEN SP SYSLOG-MSG
        let frame = format!("{} {msg}", msg.len());
        loop {
            if conn.is_none() {
                let attempt = async {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    let _ = tcp.set_nodelay(true);
                    connector.connect(name.clone(), tcp).await
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                    Ok(Ok(s)) => {
                        pause = Duration::from_secs(1);
                        conn = Some(s)
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, syslog = %format!("{host}:{port}"), "audit syslog: cannot connect over TLS"),
                    Err(_) => tracing::warn!(syslog = %format!("{host}:{port}"), "audit syslog: no TLS connection within 10 s"),
                }
            }
            let Some(s) = conn.as_mut() else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
                continue;
            };
            // a repository that stops reading must not stall the sender for ever
            match tokio::time::timeout(CONNECT_TIMEOUT, s.write_all(frame.as_bytes())).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "audit syslog: the TLS connection failed; reconnecting");
                    conn = None;
                }
                Err(_) => {
                    tracing::warn!("audit syslog: the repository took nothing for 10 s; reconnecting");
                    conn = None;
                }
            }
        }
    }
    if let Some(mut s) = conn {
        let _ = s.shutdown().await;
    }
}

/// XML attribute text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// (EventID code, its meaning, EventActionCode, EventTypeCode) of an action (PS3.16 CID
/// 400 audit event IDs and CID 401 event type codes).
fn event_of(action: &str) -> (&'static str, &'static str, &'static str, Option<(&'static str, &'static str)>) {
    match action {
        "login" => ("110114", "User Authentication", "E", Some(("110122", "Login"))),
        "logout" => ("110114", "User Authentication", "E", Some(("110123", "Logout"))),
        "query" => ("110112", "Query", "E", None),
        "retrieve" | "frames" | "rendered" | "metadata" | "waveform" => ("110103", "DICOM Instances Accessed", "R", None),
        "store" | "dicom_store" => ("110104", "DICOM Instances Transferred", "C", None),
        "report_view" | "report_print" | "report_pdf" | "item_view" | "list_view" => ("110110", "Patient Record", "R", None),
        "report_edit" | "report_sign" | "report_correct" | "critical_flag" | "critical_ack" | "item_change" => {
            ("110110", "Patient Record", "U", None)
        }
        "user_change" => ("110113", "Security Alert", "E", Some(("110137", "User security Attributes Changed"))),
        "site_change" | "settings_change" => ("110113", "Security Alert", "E", Some(("110128", "Network Configuration"))),
        "audit_read" => ("110101", "Audit Log Used", "R", None),
        "order" => ("110110", "Patient Record", "C", None),
        _ => ("110110", "Patient Record", "E", None),
    }
}

/// One row as an RFC 5424 message carrying a DICOM audit message: facility authpriv (10),
/// severity notice (5), MSGID `IHE+RFC-3881`, the XML after a BOM.
pub(crate) fn message(row: &Row, source: &str, host: &str) -> String {
    let time = crate::utc(row.at);
    let (code, meaning, action_code, type_code) = event_of(row.action);
    let outcome = match row.outcome {
        "success" => "0",
        "denied" => "4",
        _ => "8",
    };
    let mut x = String::new();
    let _ = write!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>");
    let _ = write!(x, "<EventIdentification EventActionCode=\"{action_code}\" EventDateTime=\"{time}\" EventOutcomeIndicator=\"{outcome}\">");
    let _ = write!(x, "<EventID csd-code=\"{code}\" codeSystemName=\"DCM\" originalText=\"{meaning}\"/>");
    if let Some((t, m)) = type_code {
        let _ = write!(x, "<EventTypeCode csd-code=\"{t}\" codeSystemName=\"DCM\" originalText=\"{m}\"/>");
    }
    let _ = write!(x, "<EventOutcomeDescription>{}</EventOutcomeDescription>", esc(&format!("{}: {}", row.action, row.detail)));
    x.push_str("</EventIdentification>");
    let user = row.username.or(row.site).unwrap_or("unknown");
    let _ = write!(x, "<ActiveParticipant UserID=\"{}\" UserIsRequestor=\"true\"", esc(user));
    if let Some(role) = row.role {
        let _ = write!(x, " AlternativeUserID=\"{}\"", esc(role));
    }
    if let Some(c) = row.client.filter(|c| !c.is_empty()) {
        let _ = write!(x, " NetworkAccessPointID=\"{}\" NetworkAccessPointTypeCode=\"2\"", esc(c));
    }
    x.push_str("/>");
    let _ = write!(
        x,
        "<ActiveParticipant UserID=\"{}\" UserIsRequestor=\"false\" NetworkAccessPointID=\"{}\" NetworkAccessPointTypeCode=\"1\"/>",
        esc(source),
        esc(host)
    );
    let _ = write!(x, "<AuditSourceIdentification AuditSourceID=\"{}\"/>", esc(source));
    if let Some(study) = row.study_uid {
        let _ = write!(
            x,
            "<ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">\
             <ParticipantObjectIDTypeCode csd-code=\"110180\" codeSystemName=\"DCM\" originalText=\"Study Instance UID\"/></ParticipantObjectIdentification>",
            esc(study)
        );
    }
    if let Some(pid) = row.patient_id {
        // the patient as an HL7 CX: ID^^^&issuer
        let cx = match row.patient_issuer {
            Some(i) => format!("{pid}^^^&{i}"),
            None => pid.to_string(),
        };
        let _ = write!(
            x,
            "<ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">\
             <ParticipantObjectIDTypeCode csd-code=\"2\" codeSystemName=\"RFC-3881\" originalText=\"Patient Number\"/></ParticipantObjectIdentification>",
            esc(&cx)
        );
    }
    x.push_str("</AuditMessage>");
    format!("<85>1 {time} {host} readhub {} IHE+RFC-3881 - \u{feff}{x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_a_syslog_line_with_escaped_xml() {
        let row = Row {
            at: 0,
            username: Some("张<三>"),
            role: Some("reader"),
            site: None,
            client: Some("10.0.0.2"),
            action: "report_sign",
            outcome: "success",
            study_uid: Some("1.2.3"),
            patient_id: Some("P&1"),
            patient_issuer: Some("READHUB:A"),
            detail: "POST /x → 200",
        };
        let m = message(&row, "READHUB", "hub1");
        assert!(m.starts_with("<85>1 1970-01-01T00:00:00.000Z hub1 readhub "), "{m}");
        assert!(m.contains(" IHE+RFC-3881 - \u{feff}<?xml"), "{m}");
        assert!(m.contains("UserID=\"张&lt;三&gt;\""), "{m}");
        assert!(m.contains("ParticipantObjectID=\"P&amp;1^^^&amp;READHUB:A\""), "{m}");
        assert!(m.contains("csd-code=\"110110\"") && m.contains("EventActionCode=\"U\""), "{m}");
        assert!(Target::parse("tcp://x:1", None).is_err());
        assert!(matches!(Target::parse("udp://127.0.0.1:514", None), Ok(Target::Udp(a)) if a.port() == 514));
        assert!(Target::parse("tls://repo.example:6514", None).unwrap_err().contains("audit_syslog_ca_file"));
    }
}
