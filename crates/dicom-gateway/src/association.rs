//! One association, from A-ASSOCIATE-RQ to release or abort.

use std::collections::HashSet;
use std::sync::Arc;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, UserIdentity};
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::{Pdu, ServerAssociationOptions};
use readhub_tls::rustls::ServerConfig;
use storage::ingest::{Announced, Refusal};
use storage::{IngestError, InstanceWriter, Site, Storage, Transfer};
use tokio::net::TcpStream;

use crate::admission::Admission;
use crate::dimse::{self, Command, Status};
use crate::{commitment, find, mwl, retrieve, syntaxes, Config, Handover};

/// Access control: the calling AE title must be registered to a site (or enrollment is
/// open); on the plain listener, not to a site bound to client certificates.
#[derive(Debug, Clone)]
pub struct AeAccess {
    pub known: HashSet<String>,
    pub open_enrollment: bool,
    /// AE titles of certificate-bound sites, refused here (empty on the TLS listener, where
    /// the certificate itself is checked once the association is up)
    pub tls_only: HashSet<String>,
}

impl AccessControl for AeAccess {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        _called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if self.tls_only.contains(calling_ae_title.trim()) {
            tracing::warn!(
                dimse.calling_ae = calling_ae_title.trim(),
                "association rejected: this AE title's site is bound to client certificates and \
                 sends over DICOM TLS only (dicom_tls_addr)"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        if self.open_enrollment || self.known.contains(calling_ae_title.trim()) {
            Ok(())
        } else {
            tracing::warn!(
                dimse.calling_ae = calling_ae_title.trim(),
                "association rejected: calling AE title is not registered to any site \
                 (register it with `readhub site add NAME --ae {}`)",
                calling_ae_title.trim()
            );
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// The largest DIMSE command set accepted (PS3.7 command sets are a few hundred bytes).
const MAX_COMMAND_SET: usize = 64 * 1024;

/// What the receive loop is doing.
enum Rx {
    /// waiting for (the rest of) a command set
    Idle { command: Vec<u8> },
    /// receiving the data set of a request answered from memory: a Storage Commitment
    /// N-ACTION or a C-FIND identifier (at most `limit` bytes)
    Request { cmd: Command, pc_id: u8, abstract_syntax: String, ts: String, data: Vec<u8>, limit: usize },
    /// reading (and dropping) the data set of a C-STORE that is refused before it is read
    Discard { cmd: Command, pc_id: u8 },
    /// receiving the data set of a C-STORE
    Data {
        cmd: Command,
        pc_id: u8,
        writer: Option<InstanceWriter>,
        error: Option<IngestError>,
        /// when the C-STORE-RQ arrived (`readhub_cstore_duration_seconds`)
        started: std::time::Instant,
    },
}

/// What the gateway negotiates: our AE title, the registered calling AE titles (minus
/// `tls_only` ones), PDU size, timeouts, SOP classes and transfer syntaxes.
/// SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET requester asks to take the SCP role for
/// the storage SOP classes it wants its instances in; readhub grants what is asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles;

impl dicom_ul::association::server::Negotiation for Roles {
    fn negotiate_roles(&self, _sop_class_uid: &str, scu_role: bool, scp_role: bool) -> Option<dicom_ul::pdu::RequestorRoles> {
        Some(dicom_ul::pdu::RequestorRoles { scu: scu_role, scp: scp_role })
    }
}

fn association_options(config: &Config, known: HashSet<String>, tls_only: HashSet<String>) -> ServerAssociationOptions<'static, AeAccess, Roles> {
    let mut options = ServerAssociationOptions::new()
        .with_negotiation(Roles)
        .ae_access_control(AeAccess { known, open_enrollment: config.open_enrollment, tls_only })
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.max_pdu_length)
        .read_timeout(config.peer_timeout)
        .write_timeout(config.peer_timeout);
    for a in syntaxes::ABSTRACT_SYNTAXES {
        options = options.with_abstract_syntax(*a);
    }
    for t in syntaxes::TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*t);
    }
    options
}

/// A connection to the plain DICOM port, admitted (its A-ASSOCIATE-RQ has been seen).
pub(crate) async fn serve(mut socket: TcpStream, storage: Storage, config: &Config, handover: &Handover) {
    let peer = socket.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    // read per association, so a site added with `readhub site add` (or by another
    // process) is known at once
    let lookups = async {
        let known = storage::sites::all_ae_titles(&storage.db).await?;
        let tls_only = storage::sites::certificate_bound_ae_titles(&storage.db).await?;
        Ok::<_, storage::Error>((known, tls_only))
    };
    let (known, tls_only) = match lookups.await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "cannot read registered AE titles; association rejected (transient)");
            crate::admission::reject_congested(&mut socket).await;
            return;
        }
    };
    match association_options(config, known, tls_only).establish_async(socket).await {
        Ok(assoc) => run(assoc, None, &peer, storage, config, handover).await,
        Err(e) => {
            tracing::warn!(error = %e, "association not established");
            refused(handover, &peer, None, format!("association not established: {e}")).await;
        }
    }
}

/// A connection to the DICOM TLS listener: the TLS handshake and the A-ASSOCIATE-RQ must
/// come within the request timeout, and until they have the connection holds only its
/// handshake place (the oldest silent one is evicted when too many wait, as on the plain
/// port); then it takes an association slot and its AE title's share, or is aborted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_tls(
    socket: TcpStream,
    tls: Arc<ServerConfig>,
    mut handshake: crate::admission::Handshake,
    admission: &Admission,
    storage: Storage,
    config: &Config,
    handover: &Handover,
) {
    let peer = socket.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let known = match storage::sites::all_ae_titles(&storage.db).await {
        Ok(k) => k,
        Err(e) => return tracing::error!(error = %e, "cannot read registered AE titles; TLS connection closed"),
    };
    let options = association_options(config, known, HashSet::new()).tls_config(tls);
    let established = tokio::select! {
        r = tokio::time::timeout(config.association_request_timeout, options.establish_tls_async(socket)) => r,
        _ = handshake.evicted() => {
            return tracing::warn!("evicted: the oldest of too many connections without a TLS handshake and A-ASSOCIATE-RQ");
        }
    };
    drop(handshake);
    let mut assoc = match established {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "TLS association not established");
            return refused(handover, &peer, None, format!("TLS association not established: {e}")).await;
        }
        Err(_) => return tracing::warn!("no TLS handshake and A-ASSOCIATE-RQ within the request timeout; closed"),
    };
    let peer_cert = {
        let (_, conn) = assoc.inner_stream().get_ref();
        conn.peer_certificates().and_then(|c| c.first()).map(|c| readhub_tls::fingerprint(c))
    };
    let calling = {
        use dicom_ul::association::Association;
        assoc.peer_ae_title().trim().to_string()
    };
    // the same slots and per-AE shares as the plain port's associations
    let (Some(_slot), Some(_share)) = (admission.slot(), admission.share_of(&calling)) else {
        tracing::warn!(dimse.calling_ae = %calling, "no association slot free (or this AE title holds its share); aborting");
        let _ = assoc.abort().await;
        return;
    };
    run(assoc, Some(peer_cert), &peer, storage, config, handover).await
}

/// Serve an established association until release or abort. `tls`: it came over TLS,
/// with the client certificate's fingerprint if the peer presented one.
async fn run<S>(
    mut assoc: AsyncServerAssociation<S>,
    tls: Option<Option<readhub_tls::Fingerprint>>,
    peer: &str,
    storage: Storage,
    config: &Config,
    handover: &Handover,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let calling = {
        use dicom_ul::association::Association;
        assoc.peer_ae_title().trim().to_string()
    };
    tracing::Span::current().record("dimse.calling_ae", calling.as_str());
    // a site's modality (stores, commits, asks the modality worklist, queries its site's
    // studies) or a reading pool's workstation (queries and retrieves the pool's studies)
    let pool = match storage::sites::pool_for_ae(&storage.db, &calling).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "pool lookup failed; aborting");
            let _ = assoc.abort().await;
            return;
        }
    };
    let (site, scope, who) = match pool {
        Some(pool_id) => (None, handover.worklist.pool_scope(pool_id), format!("pool:{pool_id}")),
        None => match site_for(&storage, config, &calling).await {
            Some(s) => {
                let (scope, who) = (storage::query::StudyFilter::Site(s.id), s.name.clone());
                (Some(s), scope, who)
            }
            None => {
                tracing::warn!("calling AE title has no site; aborting");
                let _ = assoc.abort().await;
                return refused(handover, peer, None, format!("calling AE {calling}: no site")).await;
            }
        },
    };
    if let Some(site) = &site {
        if let Err(why) = certificate_fits(&storage, site, tls.as_ref()).await {
            tracing::warn!(site = %site.name, tls = tls.is_some(), "{why}; aborting");
            let _ = assoc.abort().await;
            return refused(handover, peer, Some(&site.name), format!("calling AE {calling}: {why}")).await;
        }
    }
    let mut trail = Trail { site: who.clone(), calling: calling.clone(), peer: peer.to_string(), tls: tls.is_some(), studies: Vec::new() };
    let contexts: Vec<(u8, String, String)> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .map(|pc| (pc.id, pc.abstract_syntax.clone(), pc.transfer_syntax.clone()))
        .collect();
    tracing::info!(site = %who, contexts = contexts.len(), "association accepted");

    let transfer = handover.transfers.begin("assoc", format!("dimse:{calling}"));
    tracing::Span::current().record("dimse.transfer", transfer.id.as_str());
    // did this association store anything new (then its end is news for the worklist)
    let mut handed_over = false;
    let mut rx = Rx::Idle { command: Vec::new() };
    let (mut stored, mut failed) = (0u32, 0u32);
    loop {
        let pdu = match assoc.receive().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "peer stalled or connection lost; aborting association");
                if let Rx::Data { writer: Some(w), .. } = rx {
                    w.abort().await;
                }
                let _ = assoc.abort().await;
                break;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    let reply = match handle_pdv(&mut rx, pdv, &contexts, &storage, site.as_ref(), &transfer, &calling).await {
                        Ok(r) => r,
                        Err(reason) => {
                            tracing::warn!(%reason, "protocol error; aborting association");
                            if let Rx::Data { writer: Some(w), .. } = std::mem::replace(&mut rx, Rx::Idle { command: Vec::new() }) {
                                w.abort().await;
                            }
                            let _ = assoc.abort().await;
                            end_transfer(&storage, handover, &transfer, handed_over).await;
                            trail.record(handover, stored, failed).await;
                            return;
                        }
                    };
                    let Some((outgoing, outcome)) = reply else { continue };
                    match outcome {
                        Some(Ok(inst)) => {
                            stored += 1;
                            if !trail.studies.contains(&inst.attrs.study_uid) && trail.studies.len() < 1000 {
                                trail.studies.push(inst.attrs.study_uid.clone());
                            }
                            // a byte-identical re-send changes nothing downstream (and has
                            // no arrival); anything else is waiting for the consumer
                            if inst.outcome != storage::IngestOutcome::Duplicate {
                                handed_over = true;
                                handover.wake.notify_one();
                            }
                        }
                        Some(Err(())) => failed += 1,
                        None => {}
                    }
                    let max = {
                        use dicom_ul::association::Association;
                        assoc.peer_max_pdu_length()
                    };
                    let mut sent = Ok(());
                    'out: for o in outgoing {
                        let batch: Vec<(u8, Vec<u8>, Option<Vec<u8>>)> = match o {
                            Outgoing::Message { pc_id, command, data } => vec![(pc_id, command, data)],
                            Outgoing::Commitment { pc_id, ts, message_id, request } => {
                                let Some(site) = &site else { continue };
                                let outcome = commitment::check(&storage, site, &request).await;
                                tracing::info!(
                                    transaction = %request.transaction_uid,
                                    committed = outcome.committed.len(),
                                    failed = outcome.failed.len(),
                                    "storage commitment"
                                );
                                // every instance held: the sender says its studies are complete,
                                // and they need not wait out a quiet period
                                if outcome.failed.is_empty() && !outcome.studies.is_empty() {
                                    match storage::arrival::record_study_complete(&storage.db, &transfer, &outcome.studies).await {
                                        Ok(()) => handover.wake.notify_one(),
                                        Err(e) => tracing::warn!(error = %e, "could not record that the studies are complete"),
                                    }
                                }
                                match commitment::event_report(message_id, &ts, &request, &outcome) {
                                    Ok((command, data)) => vec![(pc_id, command, Some(data))],
                                    Err(e) => {
                                        tracing::warn!(error = %e, "storage commitment result cannot be written");
                                        continue;
                                    }
                                }
                            }
                            Outgoing::WorklistFind { pc_id, ts, cmd, identifier } => match &site {
                                Some(site) => find::worklist(handover, site, pc_id, &ts, &cmd, &identifier).await,
                                None => vec![(pc_id, dimse::find_response(&cmd, Status::UnableToProcess, Some("a workstation has no modality worklist")), None)],
                            },
                            Outgoing::QueryFind { pc_id, ts, cmd, identifier } => {
                                find::query(&storage, scope, &config.ae_title, pc_id, &ts, &cmd, &identifier).await
                            }
                            Outgoing::Move { pc_id, cmd, identifier } => {
                                let rsp = find::move_request(&storage, scope, site.as_ref(), &config.ae_title, &calling, &cmd, &identifier, config.peer_timeout).await;
                                vec![(pc_id, rsp, None)]
                            }
                            Outgoing::Get { pc_id, cmd, identifier } => {
                                let outcome = find::get_request(&mut assoc, &storage, scope, &contexts, pc_id, &cmd, &identifier).await;
                                match outcome {
                                    Ok(rsp) => vec![(pc_id, rsp, None)],
                                    Err(e) => {
                                        sent = Err(e);
                                        break 'out;
                                    }
                                }
                            }
                        };
                        for (pc_id, command, data) in batch {
                            for msg in dimse::message_pdus(pc_id, command, data.as_deref(), max) {
                                sent = assoc.send(&msg).await;
                                if sent.is_err() {
                                    break 'out;
                                }
                            }
                        }
                    }
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "could not send response; aborting association");
                        let _ = assoc.abort().await;
                        end_transfer(&storage, handover, &transfer, handed_over).await;
                        trail.record(handover, stored, failed).await;
                        return;
                    }
                }
            }
            Pdu::ReleaseRQ => {
                if let Rx::Data { writer: Some(w), .. } = rx {
                    w.abort().await;
                }
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                tracing::info!(stored, failed, "association released");
                break;
            }
            Pdu::AbortRQ { source } => {
                tracing::warn!(?source, stored, failed, "association aborted by peer");
                if let Rx::Data { writer: Some(w), .. } = rx {
                    w.abort().await;
                }
                break;
            }
            other => {
                tracing::warn!(pdu = ?other, "unexpected PDU; aborting association");
                if let Rx::Data { writer: Some(w), .. } = rx {
                    w.abort().await;
                }
                let _ = assoc.abort().await;
                break;
            }
        }
    }
    end_transfer(&storage, handover, &transfer, handed_over).await;
    trail.record(handover, stored, failed).await;
}

/// What the audit trail keeps of an association: one row per study it stored into (or
/// one without a study when it stored nothing).
struct Trail {
    site: String,
    calling: String,
    peer: String,
    tls: bool,
    studies: Vec<String>,
}

impl Trail {
    async fn record(&self, handover: &Handover, stored: u32, failed: u32) {
        let actor = audit::Actor { site_name: Some(self.site.clone()), client: Some(self.peer.clone()), role: Some("modality".into()), ..Default::default() };
        let outcome = if failed > 0 && stored == 0 { audit::Outcome::Failed } else { audit::Outcome::Success };
        let transport = if self.tls { "DICOM TLS" } else { "DICOM" };
        let mut event = audit::Event::new(actor, audit::Action::DicomStore, outcome)
            .detail(format!("calling AE {} over {transport}: {stored} stored, {failed} failed", self.calling));
        for s in &self.studies {
            event = event.subject(audit::Subject::Study(s.clone()));
        }
        handover.audit.record(event).await;
    }
}

/// An association refused after its request: a security event for the trail.
async fn refused(handover: &Handover, peer: &str, site: Option<&str>, why: String) {
    let actor = audit::Actor { site_name: site.map(str::to_string), client: Some(peer.to_string()), role: Some("modality".into()), ..Default::default() };
    handover.audit.record(audit::Event::new(actor, audit::Action::DicomStore, audit::Outcome::Denied).detail(why)).await;
}

/// The association has ended: its studies may become ready after the quiet period. If this
/// cannot be recorded (database down), the next start of this node ends the transfer, and
/// the stall horizon covers the rest.
async fn end_transfer(storage: &Storage, handover: &Handover, transfer: &Transfer, handed_over: bool) {
    if !handed_over {
        return;
    }
    match storage::arrival::end_transfer(&storage.db, transfer).await {
        Ok(()) => handover.wake.notify_one(),
        Err(e) => tracing::error!(error = %e, "could not record the end of the association's transfer"),
    }
}

/// A site bound to client certificates takes associations only over TLS with one of
/// them: a stolen AE title alone stores nothing.
async fn certificate_fits(storage: &Storage, site: &Site, tls: Option<&Option<readhub_tls::Fingerprint>>) -> Result<(), String> {
    let bound = storage::sites::certificates_of(&storage.db, site.id)
        .await
        .map_err(|e| format!("cannot read the site's certificates: {e}"))?;
    if bound.is_empty() {
        return Ok(());
    }
    match tls {
        None => Err("the site is bound to client certificates: plain DICOM refused".into()),
        Some(None) => Err("the site is bound to client certificates and the peer presented none".into()),
        Some(Some(fp)) if bound.contains(fp) => Ok(()),
        Some(Some(fp)) => Err(format!("client certificate {fp} is not one the site is bound to")),
    }
}

async fn site_for(storage: &Storage, config: &Config, calling: &str) -> Option<Site> {
    match storage::sites::site_for_ae(&storage.db, calling).await {
        Ok(Some(s)) => Some(s),
        Ok(None) if config.open_enrollment => {
            match storage::sites::enroll_ae(&storage.db, calling, config.enrollment_consortium_id).await {
                Ok(s) => {
                    tracing::warn!(site = %s.name, "open enrollment: registered a new site for this AE title");
                    Some(s)
                }
                Err(e) => {
                    tracing::error!(error = %e, "open enrollment failed");
                    None
                }
            }
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "site lookup failed");
            None
        }
    }
}

/// What a PDV leads to: messages to send (a presentation context, a command set, and the
/// data set when the message has one), and the outcome of a C-STORE.
type Reply = Option<(Vec<Outgoing>, Option<Result<storage::StoredInstance, ()>>)>;

enum Outgoing {
    /// a message: a command set, and the data set when it has one
    Message { pc_id: u8, command: Vec<u8>, data: Option<Vec<u8>> },
    /// a Storage Commitment result, made (the index read) only once what came before it
    /// (the N-ACTION-RSP) has been sent
    Commitment { pc_id: u8, ts: String, message_id: u16, request: commitment::Request },
    /// a Modality Worklist C-FIND: its answers, then the final status
    WorklistFind { pc_id: u8, ts: String, cmd: Command, identifier: crate::mwl::Identifier },
    /// a Query/Retrieve C-FIND, within the caller's scope
    QueryFind { pc_id: u8, ts: String, cmd: Command, identifier: crate::mwl::Identifier },
    /// a C-MOVE: the sub-operations on a new association, then the final status
    Move { pc_id: u8, cmd: Command, identifier: crate::mwl::Identifier },
    /// a C-GET: the sub-operations on this association, then the final status
    Get { pc_id: u8, cmd: Command, identifier: crate::mwl::Identifier },
}

fn answer(pc_id: u8, command: Vec<u8>) -> Vec<Outgoing> {
    vec![Outgoing::Message { pc_id, command, data: None }]
}

/// Handle one PDV. Returns a response to send (with the ingest outcome, for C-STORE), or
/// Err for a protocol violation that ends the association.
async fn handle_pdv(
    rx: &mut Rx,
    pdv: PDataValue,
    contexts: &[(u8, String, String)],
    storage: &Storage,
    site: Option<&Site>,
    transfer: &Transfer,
    calling: &str,
) -> Result<Reply, String> {
    match rx {
        Rx::Idle { command } => {
            if pdv.value_type != PDataValueType::Command {
                return Err("data PDV received where a command was expected".into());
            }
            // a command set is a few hundred bytes; fragments that never end would otherwise
            // grow memory without limit
            if command.len() + pdv.data.len() > MAX_COMMAND_SET {
                return Err(format!("a DIMSE command set of more than {MAX_COMMAND_SET} bytes"));
            }
            command.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                return Ok(None);
            }
            let bytes = std::mem::take(command);
            let cmd = dimse::parse_command(&bytes)?;
            let (_, abstract_syntax, ts) = contexts
                .iter()
                .find(|(id, _, _)| *id == pdv.presentation_context_id)
                .ok_or_else(|| format!("presentation context {} was not accepted", pdv.presentation_context_id))?;
            match cmd.field {
                dimse::C_ECHO_RQ => {
                    tracing::debug!("C-ECHO");
                    let rsp = dimse::response(dimse::C_ECHO_RSP, &cmd, Status::Success, None);
                    Ok(Some((answer(pdv.presentation_context_id, rsp), None)))
                }
                dimse::C_STORE_RQ if cmd.has_data_set && site.is_none() => {
                    tracing::warn!("C-STORE from a workstation's AE title: it stores nothing; refused");
                    *rx = Rx::Discard { cmd, pc_id: pdv.presentation_context_id };
                    Ok(None)
                }
                dimse::C_STORE_RQ if cmd.has_data_set => {
                    let Some(site) = site else { unreachable!("checked above") };
                    let announced = Announced {
                        sop_class_uid: if cmd.sop_class_uid.is_empty() { abstract_syntax.clone() } else { cmd.sop_class_uid.clone() },
                        sop_instance_uid: cmd.sop_instance_uid.clone(),
                    };
                    let (writer, error) = match storage
                        .begin_instance(site, transfer, ts, announced, Some(calling))
                        .await
                    {
                        Ok(w) => (Some(w), None),
                        Err(e) => (None, Some(e)),
                    };
                    *rx = Rx::Data {
                        cmd,
                        pc_id: pdv.presentation_context_id,
                        writer,
                        error,
                        started: std::time::Instant::now(),
                    };
                    Ok(None)
                }
                dimse::N_ACTION_RQ | dimse::C_FIND_RQ | retrieve::C_MOVE_RQ | retrieve::C_GET_RQ
                    if cmd.has_data_set && (cmd.field != dimse::N_ACTION_RQ || abstract_syntax == commitment::SOP_CLASS) =>
                {
                    let limit = if cmd.field == dimse::N_ACTION_RQ { commitment::MAX_REQUEST_BYTES } else { mwl::MAX_IDENTIFIER };
                    *rx = Rx::Request { cmd, pc_id: pdv.presentation_context_id, abstract_syntax: abstract_syntax.clone(), ts: ts.clone(), data: Vec::new(), limit };
                    Ok(None)
                }
                dimse::C_CANCEL_RQ => {
                    // answers are sent whole before the next request is read: by the time a
                    // C-CANCEL is read its C-FIND has ended, and it has no response
                    tracing::debug!("C-CANCEL after the operation ended");
                    Ok(None)
                }
                dimse::N_EVENT_REPORT_RSP => {
                    // the modality's answer to our commitment result: nothing to send back
                    tracing::info!(status = ?cmd.status, "storage commitment result acknowledged");
                    Ok(None)
                }
                other => {
                    tracing::warn!(command_field = other, "unsupported DIMSE command");
                    let rsp = dimse::response(other | 0x8000, &cmd, Status::UnrecognizedOperation, Some("unsupported operation"));
                    Ok(Some((answer(pdv.presentation_context_id, rsp), None)))
                }
            }
        }
        Rx::Request { data, limit, .. } => {
            if pdv.value_type != PDataValueType::Data {
                return Err("command PDV received in the middle of a data set".into());
            }
            if data.len() + pdv.data.len() > *limit {
                return Err(format!("a request data set of more than {limit} bytes"));
            }
            data.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                return Ok(None);
            }
            let Rx::Request { cmd, pc_id, abstract_syntax, ts, data, .. } = std::mem::replace(rx, Rx::Idle { command: Vec::new() }) else {
                unreachable!()
            };
            if matches!(cmd.field, dimse::C_FIND_RQ | retrieve::C_MOVE_RQ | retrieve::C_GET_RQ) {
                let out = match find::request(&abstract_syntax, &ts, &cmd, &data) {
                    Ok(identifier) if abstract_syntax == mwl::SOP_CLASS => Outgoing::WorklistFind { pc_id, ts, cmd, identifier },
                    Ok(identifier) if cmd.field == dimse::C_FIND_RQ => Outgoing::QueryFind { pc_id, ts, cmd, identifier },
                    Ok(identifier) if cmd.field == retrieve::C_MOVE_RQ => Outgoing::Move { pc_id, cmd, identifier },
                    Ok(identifier) => Outgoing::Get { pc_id, cmd, identifier },
                    Err(refusal) => Outgoing::Message { pc_id, command: refusal, data: None },
                };
                return Ok(Some((vec![out], None)));
            }
            if site.is_none() {
                // Storage Commitment is for what a site's modality stored
                return Ok(Some((answer(pc_id, dimse::action_response(&cmd, Status::ProcessingFailure)), None)));
            }
            let request = match commitment::parse_request(&ts, &data) {
                Ok(r) => r,
                Err(why) => {
                    tracing::warn!(%why, "storage commitment request refused");
                    return Ok(Some((answer(pc_id, dimse::action_response(&cmd, Status::ProcessingFailure)), None)));
                }
            };
            // N-ACTION-RSP at once (the modality waits for it, with a timeout), then the
            // result on the same association (PS3.4 J.3.3)
            Ok(Some((
                vec![
                    Outgoing::Message { pc_id, command: dimse::action_response(&cmd, Status::Success), data: None },
                    Outgoing::Commitment { pc_id, ts, message_id: cmd.message_id.wrapping_add(1), request },
                ],
                None,
            )))
        }
        Rx::Discard { .. } => {
            if pdv.value_type != PDataValueType::Data {
                return Err("command PDV received in the middle of a data set".into());
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let Rx::Discard { cmd, pc_id } = std::mem::replace(rx, Rx::Idle { command: Vec::new() }) else { unreachable!() };
            let rsp = dimse::response(dimse::C_STORE_RSP, &cmd, Status::NotAuthorized, Some("a workstation's AE title stores nothing"));
            Ok(Some((answer(pc_id, rsp), Some(Err(())))))
        }
        Rx::Data { writer, error, .. } => {
            if pdv.value_type != PDataValueType::Data {
                return Err("command PDV received in the middle of a data set".into());
            }
            if let (Some(w), None) = (writer.as_mut(), error.as_ref()) {
                if let Err(e) = w.write(&pdv.data).await {
                    // keep reading (and discarding) the rest so the association stays in step
                    *error = Some(e);
                }
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let Rx::Data { cmd, pc_id, writer, error, started } = std::mem::replace(rx, Rx::Idle { command: Vec::new() }) else {
                unreachable!()
            };
            let result = match (writer, error) {
                (Some(w), None) => w.finish().await,
                (Some(w), Some(e)) => {
                    w.abort().await;
                    Err(e)
                }
                (None, Some(e)) => Err(e),
                (None, None) => unreachable!("a data set has a writer or an error"),
            };
            let (status, comment, outcome) = match result {
                Ok(inst) => {
                    tracing::info!(
                        sop_instance_uid = %inst.attrs.sop_instance_uid,
                        study_uid = %inst.attrs.study_uid,
                        bytes = inst.size_bytes,
                        outcome = ?inst.outcome,
                        "C-STORE stored"
                    );
                    (Status::Success, None, Some(Ok(inst)))
                }
                Err(e) => {
                    let status = status_for(&e);
                    tracing::warn!(sop_instance_uid = %cmd.sop_instance_uid, status = format!("{:#06X}", status as u16), error = %e, "C-STORE refused");
                    (status, Some(e.to_string()), Some(Err(())))
                }
            };
            let rsp = dimse::response(dimse::C_STORE_RSP, &cmd, status, comment.as_deref());
            let result = if status == Status::Success { "success" } else { "refused" };
            metrics::histogram!("readhub_cstore_duration_seconds", "status" => result).record(started.elapsed().as_secs_f64());
            Ok(Some((answer(pc_id, rsp), outcome)))
        }
    }
}

/// The DIMSE status for a refused instance (PS3.4 B.2.3).
pub fn status_for(e: &IngestError) -> Status {
    match e.refusal() {
        Refusal::OutOfResources => Status::OutOfResources,
        Refusal::DataSetMismatch => Status::DataSetMismatch,
        Refusal::CannotUnderstand => Status::CannotUnderstand,
    }
}
