//! Group commit on SQLite (used for ingest's index rows): the instances acknowledged at about the same time
//! by several associations (or STOW-RS requests) are indexed in one transaction, so one
//! fsync of the write-ahead log makes all of them durable, where each took its own before.
//! SQLite has one writer anyway: the rows were written one transaction after another; now
//! the ones that queued up while a commit was being flushed go in the next together.
//!
//! Each instance's rows are written under a savepoint: one that fails (a database error)
//! is rolled back alone and its sender told, the others are kept. The contract is the
//! same: an acknowledgement waits for the commit that holds its rows.

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, WriteTx};
use crate::Error;

/// The most jobs in one transaction.
const MAX_GROUP: usize = 64;

/// What one sender has written in the group's transaction (ingest's index rows of one
/// instance), and what it is told.
pub trait Job: Send + Sync + 'static {
    type Answer: Send + 'static;
    /// Write the rows; the outer error is the database's (this job is rolled back alone).
    fn write<'a, 'b: 'a>(&'a self, tx: &'a mut WriteTx<'b>) -> BoxFuture<'a, Result<Self::Answer, Error>>;
    /// What the sender is told when the database failed.
    fn failed(e: Error) -> Self::Answer;
}

/// The committer's inbox.
pub struct GroupCommit<J: Job> {
    tx: mpsc::Sender<(J, oneshot::Sender<J::Answer>)>,
}

impl<J: Job> Clone for GroupCommit<J> {
    fn clone(&self) -> Self {
        GroupCommit { tx: self.tx.clone() }
    }
}

impl<J: Job> std::fmt::Debug for GroupCommit<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<J: Job> GroupCommit<J> {
    /// Start the committer for `db` (it ends when the last sender is gone).
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(db, rx));
        GroupCommit { tx }
    }

    /// Run one job; returns once its rows are committed (or it failed).
    pub async fn run(&self, job: J) -> J::Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((job, reply)).await.is_err() {
            return J::failed(stopped());
        }
        answer.await.unwrap_or_else(|_| J::failed(stopped()))
    }
}

fn stopped() -> Error {
    Error::Db { op: "group commit", source: sqlx::Error::Protocol("the index's committer has stopped".into()) }
}

async fn run<J: Job>(db: Db, mut rx: mpsc::Receiver<(J, oneshot::Sender<J::Answer>)>) {
    while let Some(first) = rx.recv().await {
        // whatever queued up while the last commit was flushed goes in this one
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<J>, Vec<_>) = group.into_iter().unzip();
        for (reply, answer) in replies.into_iter().zip(commit_group(&db, &jobs).await) {
            let _ = reply.send(answer);
        }
    }
}

/// One transaction for the group; an answer per job, in order.
async fn commit_group<J: Job>(db: &Db, jobs: &[J]) -> Vec<J::Answer> {
    let failed = |e: &Error| -> Vec<J::Answer> {
        jobs.iter().map(|_| J::failed(Error::Db { op: "commit", source: sqlx::Error::Protocol(e.to_string()) })).collect()
    };
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    if let [job] = jobs {
        // a group of one (one sender): no savepoint needed, the transaction is the job's
        let answer = match job.write(&mut tx).await {
            Ok(answer) => answer,
            Err(e) => return vec![J::failed(e)],
        };
        return match tx.commit().await {
            Ok(()) => vec![answer],
            Err(e) => failed(&e),
        };
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Err(e) = savepoint(&mut tx, "SAVEPOINT job").await {
            return failed(&e);
        }
        let (keep, answer) = match job.write(&mut tx).await {
            Ok(answer) => (true, answer),
            Err(e) => (false, J::failed(e)),
        };
        let undo = if keep { Ok(()) } else { savepoint(&mut tx, "ROLLBACK TO SAVEPOINT job").await };
        if let Err(e) = undo.and(savepoint(&mut tx, "RELEASE SAVEPOINT job").await) {
            return failed(&e);
        }
        answers.push(answer);
    }
    match tx.commit().await {
        Ok(()) => answers,
        Err(e) => failed(&e),
    }
}

async fn savepoint(tx: &mut WriteTx<'_>, sql: &'static str) -> Result<(), Error> {
    sqlx::query(sql).execute(&mut **tx).await.map(|_| ()).map_err(Error::db("savepoint"))
}
