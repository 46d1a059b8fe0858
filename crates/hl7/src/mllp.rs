//! MLLP (HL7 v2 over TCP, <VT> message <FS><CR>): the orders listener. Every message gets
//! an ACK (AA) or a NAK (AE/AR) naming the segment and field at fault; a connection holds
//! at most one message being read, of at most [`MAX_MESSAGE`] bytes, and one that stays
//! silent is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use worklist::Worklist;

use crate::message::{self, Header, Nak, Us, MAX_MESSAGE};
use crate::orders::{read_order, OrderControl};

const START: u8 = 0x0B;
const END: u8 = 0x1C;
const CR: u8 = 0x0D;

/// Connections served at once (a county's HIS interfaces are a handful).
const MAX_CONNECTIONS: usize = 64;
/// A connection silent this long between messages is closed (HIS interface engines keep
/// connections open and reconnect when closed).
const IDLE: Duration = Duration::from_secs(300);
/// A message must arrive whole within this long once it has started.
const MESSAGE_TIME: Duration = Duration::from_secs(60);

/// Settings of the listener.
#[derive(Debug, Clone)]
pub struct Config {
    pub us: Us,
}

/// What frames a connection sends.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Message(Vec<u8>),
    /// the peer closed the connection between messages
    Closed,
}

/// Read one MLLP frame. Bytes before the start block are skipped (some senders put a line
/// break between frames); a frame longer than `MAX_MESSAGE` is an error.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R, idle: Duration, whole: Duration) -> std::io::Result<Frame> {
    let mut byte = [0u8; 1];
    // wait for the start block
    loop {
        match tokio::time::timeout(idle, r.read(&mut byte)).await {
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no message within the idle time")),
            Ok(Ok(0)) => return Ok(Frame::Closed),
            Ok(Ok(_)) if byte[0] == START => break,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e),
        }
    }
    let read_body = async {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let n = r.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a message"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(2).position(|w| w == [END, CR]) {
                if end + 2 != buf.len() {
                    // a sender must wait for the ACK before the next message (HL7 MLLP
                    // release 2): anything after the end block is a protocol error
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bytes after the end of a message before its ACK"));
                }
                buf.truncate(end);
                return Ok(buf);
            }
            if buf.len() > MAX_MESSAGE + 2 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("message longer than {MAX_MESSAGE} bytes"),
                ));
            }
        }
    };
    match tokio::time::timeout(whole, read_body).await {
        Ok(r) => r.map(Frame::Message),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the message did not arrive whole in time")),
    }
}

/// Write one MLLP frame.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.extend_from_slice(&[END, CR]);
    w.write_all(&out).await?;
    w.flush().await
}

/// Serve orders on `listener` until `stop` resolves.
pub async fn serve(listener: TcpListener, worklist: Worklist, audit: audit::AuditLog, config: Config, stop: impl std::future::Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let config = Arc::new(config);
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HL7 accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many HL7 connections; closed");
            continue;
        };
        let (wl, audit, config) = (worklist.clone(), audit.clone(), config.clone());
        let span = tracing::info_span!("hl7", peer = %peer, hl7.sender = tracing::field::Empty);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                connection(socket, &peer.ip().to_string(), &wl, &audit, &config).await;
                drop(slot);
            },
            span,
        ));
    }
}

async fn connection(mut socket: TcpStream, peer: &str, wl: &Worklist, audit: &audit::AuditLog, config: &Config) {
    let _ = socket.set_nodelay(true);
    loop {
        let bytes = match read_frame(&mut socket, IDLE, MESSAGE_TIME).await {
            Ok(Frame::Message(b)) => b,
            Ok(Frame::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "HL7 connection closed");
                return;
            }
        };
        let reply = handle(&bytes, peer, wl, audit, config).await;
        if let Err(e) = write_frame(&mut socket, &reply).await {
            tracing::warn!(error = %e, "HL7 ACK could not be sent");
            return;
        }
    }
}

/// One message in, its acknowledgement out (bytes, in the message's character set).
pub async fn handle(bytes: &[u8], peer: &str, wl: &Worklist, audit: &audit::AuditLog, config: &Config) -> Vec<u8> {
    let now = wl.now();
    let inbound = match message::decode(bytes) {
        Ok(m) => m,
        Err(nak) => {
            tracing::warn!(reason = %nak, "HL7 message refused");
            // what can be read of the header, for the NAK's addressing
            let header = Header { control_id: String::new(), ..Default::default() };
            return message::ack(&config.us, &header, message::Charset::Utf8, &Err(nak), now);
        }
    };
    let h = &inbound.header;
    tracing::Span::current().record("hl7.sender", format!("{}@{}", h.sending_application, h.sending_facility).as_str());
    let outcome = process(&inbound, wl).await;
    let actor = audit::Actor {
        username: Some(format!("hl7:{}@{}", h.sending_application, h.sending_facility)),
        role: Some("his".into()),
        site_name: outcome.as_ref().ok().map(|(site, _)| site.clone()),
        client: Some(peer.to_string()),
        ..Default::default()
    };
    let (result, event) = match outcome {
        Ok((_, text)) => {
            tracing::info!(control_id = %h.control_id, "{text}");
            (Ok(text.clone()), audit::Event::new(actor, audit::Action::Order, audit::Outcome::Success).detail(format!("HL7 {}: {text}", h.control_id)))
        }
        Err(nak) => {
            tracing::warn!(control_id = %h.control_id, reason = %nak, "HL7 message refused");
            let detail = format!("HL7 {} refused: {nak}", h.control_id);
            (Err(nak), audit::Event::new(actor, audit::Action::Order, audit::Outcome::Failed).detail(detail))
        }
    };
    audit.record(event).await;
    message::ack(&config.us, h, inbound.charset, &result, now)
}

/// Apply an order message. Ok: the site's name and what was done.
async fn process(inbound: &message::Inbound, wl: &Worklist) -> Result<(String, String), Nak> {
    let h = &inbound.header;
    let site = storage::sites::site_for_hl7_sender(&wl.db, &h.sending_application, &h.sending_facility)
        .await
        .map_err(|e| Nak::general(207, format!("readhub cannot read its sites now ({e}); send again later")))?
        .ok_or_else(|| Nak {
            reject: true,
            ..Nak::at(
                204,
                "MSH",
                3,
                None,
                format!(
                    "sending application {:?} at facility {:?} is not mapped to a site: an admin maps it with \
                     `readhub site add-hl7-sender SITE {}` / 发送方未登记",
                    h.sending_application, h.sending_facility, h.sending_application
                ),
            )
        })?;
    let msg = message::parse(&inbound.text)?;
    let order = read_order(&msg, h, wl.config.utc_offset_hours)?;
    let source = format!("hl7:{}", h.sending_application);
    let acc = order.order.accession_number.clone();
    let done = match order.control {
        OrderControl::New => wl.place_order(site.id, order.order, &source).await.map(|o| format!("order {} placed (accession {acc})", o.id)),
        OrderControl::Change => wl.change_order(site.id, &acc, order.order).await.map(|o| format!("order {} changed (accession {acc})", o.id)),
        OrderControl::Cancel => wl.cancel_order(site.id, &acc).await.map(|o| format!("order {} cancelled (accession {acc})", o.id)),
        OrderControl::Other(c) => return Ok((site.name, format!("order control {c} acknowledged; nothing changed"))),
    };
    done.map(|text| (site.name.clone(), text)).map_err(|e| match e {
        worklist::Error::Conflict(m) => Nak::at(205, "OBR", 18, None, m),
        worklist::Error::NotFound(m) => Nak::at(204, "OBR", 18, None, format!("{m}: no such order to change or cancel")),
        worklist::Error::Invalid(m) => Nak::general(102, m),
        other => Nak::general(207, format!("{other}; send again later")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, b"MSH|x").await.unwrap();
        assert_eq!(read_frame(&mut b, IDLE, MESSAGE_TIME).await.unwrap(), Frame::Message(b"MSH|x".to_vec()));
        drop(a);
        assert_eq!(read_frame(&mut b, IDLE, MESSAGE_TIME).await.unwrap(), Frame::Closed);

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let _ = a.write_all(&[START]).await;
            let big = vec![b'A'; 64 * 1024];
            for _ in 0..20 {
                if a.write_all(&big).await.is_err() {
                    break;
                }
            }
        });
        assert!(read_frame(&mut b, IDLE, MESSAGE_TIME).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_sender_is_closed() {
        let (_a, mut b) = tokio::io::duplex(64);
        let r = read_frame(&mut b, Duration::from_millis(50), MESSAGE_TIME).await;
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    }
}
