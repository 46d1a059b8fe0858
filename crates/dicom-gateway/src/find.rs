//! C-FIND requests: read the identifier, answer every match as a Pending response with its
//! identifier, then the final status (PS3.4 C.4.1.3). Answers are made whole before they
//! are sent, and bounded in number.

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use storage::Site;

use crate::dimse::{self, Command, Status};
use storage::query::StudyFilter;
use storage::Storage;

use crate::mwl::MAX_ANSWERS;
use crate::retrieve::{self, Counts};
use crate::{mwl, qr, Handover};


/// A message: presentation context, command set, data set.
pub(crate) type Message = (u8, Vec<u8>, Option<Vec<u8>>);

/// A C-FIND whose identifier has arrived: the identifier to answer, or the final response
/// (a command set) that refuses it.
pub(crate) fn request(abstract_syntax: &str, ts: &str, cmd: &Command, data: &[u8]) -> Result<mwl::Identifier, Vec<u8>> {
    let refuse = |status: u16, why: &str| match cmd.field {
        retrieve::C_MOVE_RQ => retrieve::retrieve_response(retrieve::C_MOVE_RSP, cmd, status, Counts::default(), Some(why)),
        retrieve::C_GET_RQ => retrieve::retrieve_response(retrieve::C_GET_RSP, cmd, status, Counts::default(), Some(why)),
        _ => dimse::find_response(cmd, if status == 0x0211 { Status::UnrecognizedOperation } else { Status::IdentifierMismatch }, Some(why)),
    };
    let served = match cmd.field {
        dimse::C_FIND_RQ => abstract_syntax == mwl::SOP_CLASS || qr::FIND.contains(&abstract_syntax),
        retrieve::C_MOVE_RQ => qr::MOVE.contains(&abstract_syntax),
        retrieve::C_GET_RQ => qr::GET.contains(&abstract_syntax),
        _ => false,
    };
    if !served {
        return Err(refuse(0x0211, "this operation is not served on this SOP class"));
    }
    mwl::parse_identifier(ts, data).map_err(|why| {
        tracing::warn!(%why, "identifier refused");
        refuse(retrieve::UNABLE_TO_PROCESS, &why)
    })
}

/// A Query/Retrieve C-FIND, answered within the caller's scope.
pub(crate) async fn query(storage: &Storage, scope: StudyFilter, our_ae: &str, pc_id: u8, ts: &str, cmd: &Command, identifier: &mwl::Identifier) -> Vec<Message> {
    match qr::find(storage, scope, identifier, our_ae).await {
        Ok(found) => {
            if found.len() > MAX_ANSWERS {
                tracing::warn!(matches = found.len(), "C-FIND matched more than {MAX_ANSWERS}; the first are sent");
            }
            let found: Vec<_> = found.into_iter().take(MAX_ANSWERS).collect();
            tracing::info!(answers = found.len(), "C-FIND");
            answers(pc_id, ts, cmd, found)
        }
        Err(why) => {
            tracing::warn!(%why, "C-FIND refused");
            vec![(pc_id, dimse::find_response(cmd, Status::UnableToProcess, Some(&why)), None)]
        }
    }
}

/// A C-MOVE: the destination must be a configured node (an address) of the caller's own
/// site or pool; the instances go to it on a new association. The final response.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn move_request(
    storage: &Storage,
    scope: StudyFilter,
    site: Option<&Site>,
    our_ae: &str,
    calling: &str,
    cmd: &Command,
    identifier: &mwl::Identifier,
    timeout: std::time::Duration,
) -> Vec<u8> {
    let rsp = |status: u16, c: Counts, why: Option<&str>| retrieve::retrieve_response(retrieve::C_MOVE_RSP, cmd, status, c, why);
    let dest = cmd.move_destination.trim().to_string();
    // the destination: known, with an address, and the caller's own (its site's or its pool's)
    let db = &storage.db;
    let same_owner = match (site, storage::sites::site_for_ae(db, &dest).await, storage::sites::pool_for_ae(db, calling).await) {
        (Some(s), Ok(Some(d)), _) => s.id == d.id,
        (None, _, Ok(Some(pool))) => matches!(storage::sites::pool_for_ae(db, &dest).await, Ok(Some(p)) if p == pool),
        _ => false,
    };
    let address = storage::sites::node_address(db, &dest).await.ok().flatten();
    let Some((host, port)) = address.filter(|_| same_owner) else {
        tracing::warn!(destination = %dest, "C-MOVE refused: not a configured destination of the caller");
        return rsp(retrieve::MOVE_DESTINATION_UNKNOWN, Counts::default(), Some("move destination unknown"));
    };
    let level = match qr::Level::of(identifier) {
        Ok(l) => l,
        Err(why) => return rsp(retrieve::UNABLE_TO_PROCESS, Counts::default(), Some(&why)),
    };
    let found = match qr::instances(storage, scope, identifier, level).await {
        Ok(f) => f,
        Err(why) => return rsp(retrieve::UNABLE_TO_PROCESS, Counts::default(), Some(&why)),
    };
    match retrieve::move_to(storage, our_ae, &dest, &host, port, (calling, cmd.message_id), &found, timeout).await {
        Ok(c) => {
            tracing::info!(destination = %dest, completed = c.completed, failed = c.failed, "C-MOVE");
            rsp(retrieve::final_status(c), c, None)
        }
        Err(why) => {
            tracing::warn!(destination = %dest, %why, "C-MOVE failed");
            rsp(retrieve::UNABLE_TO_PERFORM_SUB_OPERATIONS, Counts { failed: found.len().min(u16::MAX as usize) as u16, ..Default::default() }, Some(&why))
        }
    }
}

/// A C-GET: the instances as C-STORE sub-operations on this association, each on a context
/// the requester accepted for its SOP class and stored transfer syntax. The final response
/// (Err: the association failed).
pub(crate) async fn get_request<S>(
    assoc: &mut dicom_ul::association::AsyncServerAssociation<S>,
    storage: &Storage,
    scope: StudyFilter,
    contexts: &[(u8, String, String)],
    _pc_id: u8,
    cmd: &Command,
    identifier: &mwl::Identifier,
) -> Result<Vec<u8>, dicom_ul::association::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let rsp = |status: u16, c: Counts, why: Option<&str>| retrieve::retrieve_response(retrieve::C_GET_RSP, cmd, status, c, why);
    let level = match qr::Level::of(identifier) {
        Ok(l) => l,
        Err(why) => return Ok(rsp(retrieve::UNABLE_TO_PROCESS, Counts::default(), Some(&why))),
    };
    let found = match qr::instances(storage, scope, identifier, level).await {
        Ok(f) => f,
        Err(why) => return Ok(rsp(retrieve::UNABLE_TO_PROCESS, Counts::default(), Some(&why))),
    };
    let max = {
        use dicom_ul::association::Association;
        assoc.peer_max_pdu_length()
    };
    let mut c = Counts { remaining: found.len().min(u16::MAX as usize) as u16, ..Default::default() };
    for (k, inst) in found.iter().enumerate() {
        c.remaining = c.remaining.saturating_sub(1);
        let Some((pc, _, ts)) = retrieve::context_for(contexts, inst) else {
            tracing::warn!(sop_class = %inst.sop_class_uid, ts = %inst.transfer_syntax_uid, "C-GET: the requester accepted no context for this instance as stored");
            c.failed += 1;
            continue;
        };
        let file = match retrieve::stored_bytes(storage, inst).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "C-GET sub-operation failed");
                c.failed += 1;
                continue;
            }
        };
        let data = match retrieve::data_set_of(&file).and_then(|d| retrieve::in_syntax(d, &inst.transfer_syntax_uid, ts)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "C-GET sub-operation failed");
                c.failed += 1;
                continue;
            }
        };
        for p in retrieve::store_messages(*pc, 0x8000u16.wrapping_add(k as u16), inst, &data, max, None) {
            assoc.send(&p).await?;
        }
        // its C-STORE-RSP (a C-CANCEL ends the retrieve)
        let status = loop {
            match assoc.receive().await? {
                dicom_ul::Pdu::PData { data } => {
                    if let Some(v) = data.iter().find(|v| v.value_type == dicom_ul::pdu::PDataValueType::Command && v.is_last) {
                        match dimse::parse_command(&v.data) {
                            Ok(r) if r.field == dimse::C_CANCEL_RQ => {
                                return Ok(rsp(0xFE00, c, Some("cancelled")));
                            }
                            Ok(r) => break r.status.unwrap_or(0xFFFF),
                            Err(_) => break 0xFFFF,
                        }
                    }
                }
                _ => break 0xFFFF,
            }
        };
        c.add(status);
    }
    tracing::info!(completed = c.completed, failed = c.failed, "C-GET");
    Ok(rsp(retrieve::final_status(c), c, None))
}

/// Answers in the negotiated transfer syntax; Pending ones, then Success.
pub(crate) fn answers(pc_id: u8, ts_uid: &str, cmd: &Command, found: Vec<InMemDicomObject>) -> Vec<Message> {
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        return vec![(pc_id, dimse::find_response(cmd, Status::UnableToProcess, Some("transfer syntax unknown")), None)];
    };
    let mut out = Vec::with_capacity(found.len() + 1);
    for obj in found {
        let mut bytes = Vec::with_capacity(1024);
        match obj.write_dataset_with_ts(&mut bytes, ts) {
            Ok(()) => out.push((pc_id, dimse::find_response(cmd, Status::Pending, None), Some(bytes))),
            Err(e) => tracing::warn!(error = %e, "a C-FIND answer cannot be written; left out"),
        }
    }
    out.push((pc_id, dimse::find_response(cmd, Status::Success, None), None));
    out
}

/// A Modality Worklist query of a site's modality, answered from the site's open orders.
pub(crate) async fn worklist(handover: &Handover, site: &Site, pc_id: u8, ts: &str, cmd: &Command, identifier: &mwl::Identifier) -> Vec<Message> {
    let query = mwl::query_of(identifier);
    let entries = match handover.worklist.modality_worklist(site.id, query.clone()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "modality worklist cannot be read");
            return vec![(pc_id, dimse::find_response(cmd, Status::UnableToProcess, Some("worklist unavailable, try again")), None)];
        }
    };
    if entries.len() > MAX_ANSWERS {
        tracing::warn!(matches = entries.len(), "modality worklist query matched more than {MAX_ANSWERS}; the first are sent");
    }
    let entries: Vec<_> = entries.into_iter().take(MAX_ANSWERS).collect();
    let charset = mwl::answer_charset(identifier, &entries);
    let found: Vec<_> = entries.iter().map(|e| mwl::answer(identifier, e, charset.as_deref())).collect();
    tracing::info!(site = %site.name, ?query, answers = found.len(), "modality worklist C-FIND");
    answers(pc_id, ts, cmd, found)
}
