//! Group commit of index rows on SQLite: the instances acknowledged at about the same time
//! by several associations (or STOW-RS requests) are indexed in one transaction, so one
//! fsync of the write-ahead log makes all of them durable, where each took its own before.
//! SQLite has one writer anyway: the rows were written one transaction after another; now
//! the ones that queued up while a commit was being flushed go in the next together.
//!
//! Each instance's rows are written under a savepoint: one that fails (a database error)
//! is rolled back alone and its sender told, the others are kept. The contract is the
//! same: an acknowledgement waits for the commit that holds its rows.

use tokio::sync::{mpsc, oneshot};

use crate::arrival::Transfer;
use crate::attrs::InstanceAttrs;
use crate::db::Db;
use crate::ingest::{IngestError, IngestOutcome};
use crate::sites::Site;
use crate::Error;
use readhub_types::StudyPk;

/// The most instances in one transaction.
const MAX_GROUP: usize = 64;

/// What indexing one durable instance needs.
pub(crate) struct Record {
    pub site: Site,
    pub transfer: Transfer,
    pub attrs: InstanceAttrs,
    pub ts_uid: String,
    pub blob_key: String,
    pub size: u64,
    pub sha256: String,
}

type Answer = Result<(StudyPk, IngestOutcome, i64), IngestError>;

/// The committer's inbox.
#[derive(Clone, Debug)]
pub(crate) struct GroupCommit {
    tx: mpsc::Sender<(Record, oneshot::Sender<Answer>)>,
}

impl GroupCommit {
    /// Start the committer for `db` (it ends when the last sender is gone).
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(db, rx));
        GroupCommit { tx }
    }

    /// Index one instance; returns once the rows are committed (or refused).
    pub async fn record(&self, r: Record) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((r, reply)).await.is_err() {
            return Err(IngestError::Storage(stopped()));
        }
        answer.await.unwrap_or_else(|_| Err(IngestError::Storage(stopped())))
    }
}

fn stopped() -> Error {
    Error::Db { op: "group commit", source: sqlx::Error::Protocol("the index's committer has stopped".into()) }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(Record, oneshot::Sender<Answer>)>) {
    while let Some(first) = rx.recv().await {
        // whatever queued up while the last commit was flushed goes in this one
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let answers = commit_group(&db, &group).await;
        for ((_, reply), answer) in group.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// One transaction for the group; an answer per record, in order.
async fn commit_group(db: &Db, group: &[(Record, oneshot::Sender<Answer>)]) -> Vec<Answer> {
    let failed = |e: &Error| -> Vec<Answer> {
        group
            .iter()
            .map(|_| Err(IngestError::Storage(Error::Db { op: "commit", source: sqlx::Error::Protocol(e.to_string()) })))
            .collect()
    };
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    let mut answers = Vec::with_capacity(group.len());
    for (r, _) in group {
        if let Err(e) = savepoint(&mut tx, "SAVEPOINT instance").await {
            return failed(&e);
        }
        let written = crate::ingest::record_in(&mut tx, &r.site, &r.transfer, &r.attrs, &r.ts_uid, &r.blob_key, r.size, &r.sha256).await;
        let (keep, answer) = match written {
            Ok(answer) => (true, answer),
            Err(e) => (false, Err(IngestError::Storage(e))),
        };
        let undo = if keep { Ok(()) } else { savepoint(&mut tx, "ROLLBACK TO SAVEPOINT instance").await };
        if let Err(e) = undo.and(savepoint(&mut tx, "RELEASE SAVEPOINT instance").await) {
            return failed(&e);
        }
        answers.push(answer);
    }
    match tx.commit().await {
        Ok(()) => answers,
        Err(e) => failed(&e),
    }
}

async fn savepoint(tx: &mut crate::db::WriteTx<'_>, sql: &'static str) -> Result<(), Error> {
    sqlx::query(sql).execute(&mut **tx).await.map(|_| ()).map_err(Error::db("savepoint"))
}
