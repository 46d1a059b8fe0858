//! C-FIND requests: read the identifier, answer every match as a Pending response with its
//! identifier, then the final status (PS3.4 C.4.1.3). Answers are made whole before they
//! are sent, and bounded in number.

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use storage::Site;

use crate::dimse::{self, Command, Status};
use crate::mwl::MAX_ANSWERS;
use crate::{mwl, Handover};


/// A message: presentation context, command set, data set.
pub(crate) type Message = (u8, Vec<u8>, Option<Vec<u8>>);

/// A C-FIND whose identifier has arrived: the identifier to answer, or the final response
/// (a command set) that refuses it.
pub(crate) fn request(abstract_syntax: &str, ts: &str, cmd: &Command, data: &[u8]) -> Result<mwl::Identifier, Vec<u8>> {
    if abstract_syntax != mwl::SOP_CLASS {
        return Err(dimse::find_response(cmd, Status::UnrecognizedOperation, Some("C-FIND on this SOP class is not served")));
    }
    mwl::parse_identifier(ts, data).map_err(|why| {
        tracing::warn!(%why, "C-FIND identifier refused");
        dimse::find_response(cmd, Status::IdentifierMismatch, Some(&why))
    })
}

/// Answers in the negotiated transfer syntax; Pending ones, then Success.
fn answers(pc_id: u8, ts_uid: &str, cmd: &Command, found: Vec<InMemDicomObject>) -> Vec<Message> {
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
