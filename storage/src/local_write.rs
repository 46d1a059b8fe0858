//! Writing an instance to the local disk durably at less cost than object_store's local
//! store (which fsyncs the whole file at the end, then renames it and fsyncs the directory):
//!
//! - the file is written and flushed (`fdatasync` every 8 MiB) by a thread of its own
//!   while the rest is still being received, so the final fsync of a 15 MB DX flushes only
//!   its tail;
//! - on a journaling filesystem whose fsync of a file commits the journal transaction of
//!   that file's last metadata change (ext4, XFS), the staging file is renamed to its key
//!   first and then fsync'd once: the rename changed the inode (its ctime), so the fsync
//!   makes the data and the rename durable together, and the directory needs no fsync of
//!   its own. Elsewhere the portable order: fsync, rename, fsync the directory.
//!
//! The contract is unchanged: `finish` returns only when the object is durable under its
//! key. A crash before that leaves a staging file (`key#0`, swept at start like
//! object_store's) or, on ext4/XFS, a file under a key no index row names.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use crate::Error;

/// Bytes gathered before they are handed to the writing thread.
const WRITE_PIECE: usize = 1 << 20;

/// Pieces in flight between the receiving task and the writing thread: the receiver goes
/// on while the thread writes and flushes (bounded memory: 16 MiB per instance at most).
const IN_FLIGHT: usize = 16;

/// Bytes written after which the writing thread flushes them (`fdatasync`) while more
/// arrive, so the final fsync has only the tail left.
const FLUSH_EVERY: u64 = 8 << 20;

/// Whether `dir`'s filesystem commits a file's last metadata change with its fsync (see the
/// module's note): ext4 and XFS.
pub fn journal_commits_rename(dir: &std::path::Path) -> bool {
    const EXT4_SUPER_MAGIC: u64 = 0xEF53;
    const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
    rustix::fs::statfs(dir).is_ok_and(|st| {
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let kind = st.f_type as u64;
        kind == EXT4_SUPER_MAGIC || kind == XFS_SUPER_MAGIC
    })
}

/// A staging file (`<key>#<n>`): a write or upload that has not finished.
pub(crate) fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

enum Piece {
    Bytes(Vec<u8>),
    /// everything arrived: make it durable under its key. Without it (an abort, or the
    /// writer dropped with its association) the staging file is removed.
    Finish,
}

/// A file being written under the store's root: the receiving task gathers bytes, a
/// blocking thread writes and flushes them.
pub struct LocalWriter {
    tx: Option<tokio::sync::mpsc::Sender<Piece>>,
    thread: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    key: String,
    buf: Vec<u8>,
}

impl LocalWriter {
    pub fn new(root: &std::path::Path, key: &str, journal_commits_rename: bool) -> Self {
        let path = root.join(key);
        let mut staging = path.clone().into_os_string();
        staging.push("#0");
        let staging = PathBuf::from(staging);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let write = |rx: &mut tokio::sync::mpsc::Receiver<Piece>| -> std::io::Result<Option<File>> {
                if let Some(dir) = staging.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = File::options().write(true).create_new(true).open(&staging)?;
                let (mut written, mut flushed) = (0u64, 0u64);
                while let Some(piece) = rx.blocking_recv() {
                    match piece {
                        Piece::Bytes(b) => {
                            file.write_all(&b)?;
                            written += b.len() as u64;
                            if written - flushed >= FLUSH_EVERY {
                                file.sync_data()?;
                                flushed = written;
                            }
                        }
                        Piece::Finish => return Ok(Some(file)),
                    }
                }
                Ok(None)
            };
            let file = match write(&mut rx) {
                Ok(Some(file)) => file,
                Ok(None) => {
                    let _ = std::fs::remove_file(&staging);
                    return Ok(());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&staging);
                    return Err(e);
                }
            };
            // everything arrived: make it durable under its key
            if journal_commits_rename {
                std::fs::rename(&staging, &path)?;
                file.sync_all()?;
            } else {
                file.sync_all()?;
                std::fs::rename(&staging, &path)?;
                if let Some(dir) = path.parent() {
                    File::open(dir)?.sync_all()?;
                }
            }
            Ok(())
        });
        LocalWriter { tx: Some(tx), thread: Some(thread), key: key.to_string(), buf: Vec::with_capacity(WRITE_PIECE) }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::BlobIo { key: self.key.clone(), source }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_PIECE {
            let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_PIECE));
            self.send(Piece::Bytes(piece)).await?;
        }
        Ok(())
    }

    async fn send(&mut self, piece: Piece) -> Result<(), Error> {
        let sent = match &self.tx {
            Some(tx) => tx.send(piece).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // the thread stopped: its error says why
        Err(match self.join().await {
            Err(e) => e,
            Ok(()) => self.io(std::io::Error::other("the writing thread ended early")),
        })
    }

    async fn join(&mut self) -> Result<(), Error> {
        self.tx.take();
        let Some(thread) = self.thread.take() else { return Ok(()) };
        match thread.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io(e)),
            Err(e) => Err(self.io(std::io::Error::other(e.to_string()))),
        }
    }

    /// Make the file durable under its key.
    pub async fn finish(mut self) -> Result<(), Error> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.send(Piece::Bytes(rest)).await?;
        }
        self.send(Piece::Finish).await?;
        self.join().await
    }

    /// Give up: the staging file goes.
    pub async fn abort(mut self) {
        let _ = self.join().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn written_durably_under_its_key_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_commits_rename(dir.path());
        for journal in [journal, false] {
            let key = format!("instances/1/20261202/t{journal}.dcm");
            let mut w = LocalWriter::new(dir.path(), &key, journal);
            let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
            for chunk in data.chunks(256 * 1024) {
                w.write(chunk).await.unwrap();
            }
            assert!(!dir.path().join(&key).exists(), "nothing under the key before finish");
            w.finish().await.unwrap();
            assert!(std::fs::read(dir.path().join(&key)).unwrap() == data);
            assert!(!dir.path().join(format!("{key}#0")).exists(), "no staging file left");
        }
        let mut w = LocalWriter::new(dir.path(), "instances/1/x/aborted.dcm", false);
        w.write(&vec![1u8; 3 << 20]).await.unwrap();
        w.abort().await;
        assert!(!dir.path().join("instances/1/x/aborted.dcm#0").exists());
        assert!(!dir.path().join("instances/1/x/aborted.dcm").exists());
    }
}
