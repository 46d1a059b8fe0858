//! Admission: which connections get an association slot.
//!
//! A connection first has to show a complete A-ASSOCIATE-RQ within `request_timeout`
//! (read with `peek`, so the association layer still reads it whole). Until then it holds
//! no association slot, only one of a larger number of handshake places; a connection that
//! stays silent is closed when the timeout passes. When every handshake place is taken, the
//! *oldest* silent connection is closed to make room: a flood of silent connections evicts
//! its own, while a modality that sends its request at once (within milliseconds) gets in. With a request in hand, the peer takes one of `max_associations` slots
//! and one of its calling AE title's `max_per_ae`; if none is free it gets A-ASSOCIATE-RJ
//! (transient, local limit exceeded) at once, as PS3.8 9.3.4 provides, instead of waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// An A-ASSOCIATE-RQ larger than this is refused (real ones are a few KB: presentation
/// contexts and user information).
const MAX_REQUEST: usize = 64 * 1024;

/// The admission state shared by the accept loop.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    /// connections still waiting for their request, oldest first, each with its eviction
    pending: Arc<Mutex<VecDeque<(u64, oneshot::Sender<()>)>>>,
    max_pending: usize,
    per_ae: Arc<Mutex<HashMap<String, usize>>>,
    max_per_ae: usize,
    request_timeout: Duration,
}

/// A granted association: its slots are given back when it is dropped.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _share: Option<AeShare>,
}

/// One of a calling AE title's `max_per_ae` associations; given back when dropped.
pub(crate) struct AeShare {
    ae: String,
    per_ae: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for AeShare {
    fn drop(&mut self) {
        let mut m = self.per_ae.lock().expect("per-AE counts");
        if let Some(n) = m.get_mut(&self.ae) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ae);
            }
        }
    }
}

/// A connection's place among those waiting for their request; given back when dropped.
pub(crate) struct Handshake {
    id: u64,
    evicted: oneshot::Receiver<()>,
    pending: Arc<Mutex<VecDeque<(u64, oneshot::Sender<()>)>>>,
}

impl Handshake {
    /// Resolves when this connection is evicted to make room for a newer one.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut q = self.pending.lock().expect("pending handshakes");
        if let Some(i) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(i);
        }
    }
}

/// What to do with a connection.
pub(crate) enum Verdict {
    /// serve it (holding the slots)
    Serve(Admitted),
    /// it was answered with A-ASSOCIATE-RJ or closed; the reason, for the log
    Refused(String),
}

impl Admission {
    pub fn new(max_associations: usize, max_per_ae: usize, request_timeout: Duration) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max_associations)),
            // silent connections may wait for their request in larger numbers than
            // associations, but not without bound (each is a file descriptor)
            pending: Arc::default(),
            max_pending: max_associations.saturating_mul(4).max(64),
            per_ae: Arc::default(),
            max_per_ae: max_per_ae.max(1),
            request_timeout,
        }
    }

    /// A handshake place for connection `id`, evicting the oldest silent connection when
    /// every place is taken.
    pub fn handshake(&self, id: u64) -> Handshake {
        let (tx, rx) = oneshot::channel();
        let mut q = self.pending.lock().expect("pending handshakes");
        while q.len() >= self.max_pending {
            match q.pop_front() {
                Some((_, evict)) => {
                    let _ = evict.send(());
                }
                None => break,
            }
        }
        q.push_back((id, tx));
        Handshake { id, evicted: rx, pending: self.pending.clone() }
    }

    /// Wait (at most the request timeout, and unless evicted) for the connection's
    /// A-ASSOCIATE-RQ, then grant a slot or refuse.
    pub async fn admit(&self, socket: &mut TcpStream, mut handshake: Handshake) -> Verdict {
        let request = tokio::select! {
            r = tokio::time::timeout(self.request_timeout, peek_request(socket)) => r,
            _ = &mut handshake.evicted => {
                return Verdict::Refused("evicted: the oldest of too many connections without an A-ASSOCIATE-RQ".into())
            }
        };
        drop(handshake);
        let (len, calling) = match request {
            Err(_) => return Verdict::Refused(format!("no A-ASSOCIATE-RQ within {:?}: closed", self.request_timeout)),
            Ok(Err(why)) => return Verdict::Refused(why),
            Ok(Ok(x)) => x,
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            reject_local_limit(socket, len).await;
            return Verdict::Refused(format!("{calling}: every association slot is taken: A-ASSOCIATE-RJ (local limit exceeded)"));
        };
        let Some(share) = self.share_of(&calling) else {
            reject_local_limit(socket, len).await;
            return Verdict::Refused(format!(
                "{calling} already has {} associations open: A-ASSOCIATE-RJ (local limit exceeded)",
                self.max_per_ae
            ));
        };
        Verdict::Serve(Admitted { _slot: slot, _share: Some(share) })
    }

    /// An association slot, if one is free (the TLS listener takes it once the handshake
    /// and the request are done: until then a TLS connection holds only its handshake
    /// place, evictable like a silent plain one).
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// One of `calling`'s associations, unless it already holds `max_per_ae`.
    pub fn share_of(&self, calling: &str) -> Option<AeShare> {
        let mut m = self.per_ae.lock().expect("per-AE counts");
        let n = m.entry(calling.to_string()).or_default();
        if *n >= self.max_per_ae {
            return None;
        }
        *n += 1;
        Some(AeShare { ae: calling.to_string(), per_ae: self.per_ae.clone() })
    }
}

/// Wait until a whole A-ASSOCIATE-RQ is in the socket's buffer, without consuming it:
/// (its length in bytes, the calling AE title).
async fn peek_request(socket: &TcpStream) -> Result<(usize, String), String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.peek(&mut buf).await.map_err(|e| format!("connection lost before its request: {e}"))?;
        if n == 0 {
            return Err("closed before sending A-ASSOCIATE-RQ".into());
        }
        if n >= 6 {
            if buf[0] != 0x01 {
                return Err(format!("the first PDU is of type {:#04x}, not A-ASSOCIATE-RQ", buf[0]));
            }
            let len = 6 + u32::from_be_bytes(buf[2..6].try_into().expect("4 bytes")) as usize;
            if len > MAX_REQUEST || len < 42 {
                return Err(format!("an A-ASSOCIATE-RQ of {len} bytes"));
            }
            if buf.len() < len {
                buf.resize(len, 0);
                continue;
            }
            if n >= len {
                // PS3.8 9.3.2: called AE title at bytes 10..26, calling AE title at 26..42
                let calling = String::from_utf8_lossy(&buf[26..42]).trim().to_string();
                return Ok((len, calling));
            }
        }
        // more of the request is on its way
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Consume the request and answer A-ASSOCIATE-RJ: result transient (2), source the
/// service provider's presentation function (3), reason local limit exceeded (2).
async fn reject_local_limit(socket: &mut TcpStream, request_len: usize) {
    reject_transient(socket, request_len, 2).await;
}

/// The hub cannot serve an association right now (its database is unavailable): answer
/// the waiting A-ASSOCIATE-RQ with A-ASSOCIATE-RJ, transient, temporary congestion (1), so
/// the modality retries later instead of seeing the connection drop.
pub(crate) async fn reject_congested(socket: &mut TcpStream) {
    if let Ok((request_len, _)) = peek_request(socket).await {
        reject_transient(socket, request_len, 1).await;
    }
}

async fn reject_transient(socket: &mut TcpStream, request_len: usize, reason: u8) {
    let mut request = vec![0u8; request_len];
    if socket.read_exact(&mut request).await.is_ok() {
        let rj = [0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x02, 0x03, reason];
        let _ = socket.write_all(&rj).await;
        let _ = socket.shutdown().await;
    }
}
