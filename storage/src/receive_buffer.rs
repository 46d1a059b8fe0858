//! The receive buffer: a durable acknowledgement in front of a remote object store.
//!
//! On S3 an acknowledgement waited for the instance's upload: on loopback Garage a CT slice
//! cost 2.6× and a DX film 3.6× the local disk, and across a network it is worse (dcm4chee's
//! users measured 30× until they put a cache in front). With a receive buffer an instance is
//! written to this node's disk exactly as to a local store (`local_write`: flushed while it
//! arrives, fsync'd under its key) and acknowledged once that and its index row are durable;
//! an uploader then puts it in the shared store and only then removes the local copy.
//!
//! - Reads look in the buffer first, then in the store. The local copy goes only after the
//!   upload completed, so a reader that misses it finds the object in the store.
//! - Another node asks the store, where an instance still in this node's buffer is not yet:
//!   reads of instance keys wait for it a little ([`SHARED_WITHIN`]) before saying so.
//! - A crash leaves complete files under their keys (found and uploaded by the next scan,
//!   at the next start) and staging files (`key#0`: never acknowledged, swept).
//! - The buffer is scanned, not queued in memory: what another handle on the same
//!   directory wrote, or what a crash left, goes up like the rest.
//! - Deleting an instance removes both copies; an upload that finds its local copy gone when
//!   it completes removes what it put (the delete ran while it was uploading).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::Error;

/// How long a read of an instance that is not in the store yet waits for another node to
/// upload it.
pub const SHARED_WITHIN: Duration = Duration::from_secs(10);

/// Uploads at once.
const UPLOADERS: usize = 4;

/// While instances are arriving, an upload (and the store's work on the same machine) would
/// take CPU and disk from their acknowledgements: uploads wait for a pause in the arrivals
/// (renditions wait the same way), but no longer than this from the start of a burst, so a
/// busy day still drains. (The wait is decided once per burst, not per file: with a backlog
/// of 10^5 files a check of each file's age every few hundred milliseconds would take the CPU
/// it was meant to leave to the acknowledgements.)
pub const YIELD_UP_TO: Duration = Duration::from_secs(5);

/// How often the buffer is scanned when nothing wakes the uploader (a crash's leftovers,
/// files of another handle, retries after a failed upload).
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// How long a stopping node goes on uploading what its buffer holds.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Parts of this size are uploaded as they fill (S3's minimum part size); smaller objects
/// go up in one put. This bounds memory per transfer.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Bytes read from a buffered file per write to the upload.
const READ_PIECE: usize = 1 << 20;

/// This node's receive buffer (a directory on its own disk).
#[derive(Debug)]
pub struct ReceiveBuffer {
    root: PathBuf,
    journal_commits_rename: bool,
    /// a file was finished: scan now
    wake: Notify,
    /// keys being uploaded (a scan does not start them twice)
    uploading: Mutex<HashSet<String>>,
}

/// What became of one buffered file.
#[derive(Debug, PartialEq)]
enum Upload {
    /// in the store; the local copy removed
    Done,
    /// the local copy was deleted (before or during the upload): nothing is left in the store
    Gone,
}

impl ReceiveBuffer {
    pub fn open(root: &Path) -> Result<Arc<Self>, Error> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::Config(format!("cannot create the receive buffer {}: {e}", root.display())))?;
        Ok(Arc::new(ReceiveBuffer {
            root: root.to_path_buf(),
            journal_commits_rename: crate::local_write::journal_commits_rename(root),
            wake: Notify::new(),
            uploading: Mutex::new(HashSet::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn writer(&self, key: &str) -> crate::local_write::LocalWriter {
        crate::local_write::LocalWriter::new(&self.root, key, self.journal_commits_rename)
    }

    /// An instance became durable in the buffer: upload it soon.
    pub(crate) fn finished(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The keys of the complete files in the buffer (staging files and directories left
    /// out), oldest day first.
    pub fn pending(&self) -> Vec<String> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), &key, out),
                    // only instances: a stray file someone left here is neither uploaded nor removed
                    Ok(t) if t.is_file() && !crate::local_write::is_staging(&name) && crate::blob_key::BlobKey::is_instance_path(&key) => {
                        out.push(key)
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out);
        out.sort();
        out
    }

    /// Remove the day directories (`instances/<site>/<day>`) older than yesterday that are
    /// empty: every upload empties one, and a writer only opens today's (or, across
    /// midnight, yesterday's).
    fn prune_days(&self) {
        let Some(yesterday) = chrono::Utc::now().date_naive().pred_opt() else { return };
        let yesterday = yesterday.format("%Y%m%d").to_string();
        let Ok(sites) = std::fs::read_dir(self.root.join("instances")) else { return };
        for site in sites.flatten() {
            let Ok(days) = std::fs::read_dir(site.path()) else { continue };
            for day in days.flatten() {
                let name = day.file_name().to_string_lossy().into_owned();
                if name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) && name < yesterday {
                    // fails, as it should, while the directory holds a file
                    let _ = std::fs::remove_dir(day.path());
                }
            }
        }
    }

    /// Upload what the buffer holds until `stop` is set; then go on until the buffer is
    /// empty or [`DRAIN`] has passed (a node taken out of a cluster should leave nothing
    /// behind; what is left waits for its next start). `receiving` says whether instances
    /// are arriving now (see [`YIELD_UP_TO`]).
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn ObjectStore>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        receiving: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        let permits = Arc::new(tokio::sync::Semaphore::new(UPLOADERS));
        let mut uploads = tokio::task::JoinSet::new();
        let mut rounds = 0u64;
        let mut deadline: Option<tokio::time::Instant> = None;
        // when the arrivals of the current burst began (None: no burst)
        let mut burst_since: Option<tokio::time::Instant> = None;
        loop {
            if deadline.is_none() && *stop.borrow() {
                deadline = Some(tokio::time::Instant::now() + DRAIN);
            }
            if deadline.is_none() && receiving() {
                let since = *burst_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < YIELD_UP_TO {
                    // a burst: look again soon, the pause may have begun
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            } else {
                burst_since = None;
            }
            let buffer = self.clone();
            let pending = tokio::task::spawn_blocking(move || buffer.pending()).await.unwrap_or_default();
            metrics::gauge!("readhub_receive_buffer_instances").set(pending.len() as f64);
            if let Some(d) = deadline {
                if pending.is_empty() || tokio::time::Instant::now() >= d {
                    break;
                }
            }
            for key in pending {
                if !self.uploading.lock().expect("uploading set").insert(key.clone()) {
                    continue;
                }
                let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + SCAN_EVERY);
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = tokio::time::sleep_until(until) => {
                        // the next round (or the drain's end) decides
                        self.uploading.lock().expect("uploading set").remove(&key);
                        break;
                    }
                };
                let (buffer, store) = (self.clone(), store.clone());
                uploads.spawn(async move {
                    let _permit = permit;
                    let outcome = buffer.upload(&store, &key).await;
                    match &outcome {
                        Ok(Upload::Done) => metrics::counter!("readhub_receive_buffer_uploads_total", "outcome" => "uploaded").increment(1),
                        Ok(Upload::Gone) => {}
                        Err(e) => {
                            metrics::counter!("readhub_receive_buffer_uploads_total", "outcome" => "failed").increment(1);
                            tracing::warn!(blob.key = %key, error = %e,
                                "receive buffer: upload failed; the instance stays on this node's disk and is tried again");
                        }
                    }
                    buffer.uploading.lock().expect("uploading set").remove(&key);
                });
                while uploads.try_join_next().is_some() {}
            }
            rounds += 1;
            if rounds % 1800 == 1 {
                let buffer = self.clone();
                let _ = tokio::task::spawn_blocking(move || buffer.prune_days()).await;
            }
            match deadline {
                // draining: look again as soon as uploads end
                Some(d) => {
                    tokio::select! {
                        _ = uploads.join_next(), if !uploads.is_empty() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = tokio::time::sleep_until(d) => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(SCAN_EVERY) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        // uploads still running after the drain are cut: their files stay and go up at the
        // next start (an incomplete multipart upload is the store's to expire)
        uploads.abort_all();
        while uploads.join_next().await.is_some() {}
        let left = self.pending().len();
        metrics::gauge!("readhub_receive_buffer_instances").set(left as f64);
        if left > 0 {
            tracing::warn!(instances = left, buffer = %self.root.display(),
                "instances wait in this node's receive buffer: they are uploaded when the node starts again \
                 (README: receive buffer) / 接收缓冲区中尚有未上传的实例, 节点重启后继续上传");
        } else {
            tracing::info!("receive buffer empty: every instance this node received is in the shared store");
        }
    }

    /// Put one buffered file in the store, then remove the local copy.
    async fn upload(&self, store: &Arc<dyn ObjectStore>, key: &str) -> Result<Upload, Error> {
        let io = |source: std::io::Error| Error::BlobIo { key: key.to_string(), source };
        let path = self.path(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Upload::Gone),
            Err(e) => return Err(io(e)),
        };
        let object = ObjectPath::from(key);
        // two parts in flight per upload (object_store's default is eight: with four uploads
        // of 15 MB films at once that was 160 MB of parts)
        let mut w = BufWriter::with_capacity(store.clone(), object.clone(), PART_SIZE).with_max_concurrency(2);
        let mut piece = vec![0u8; READ_PIECE];
        let copied: std::io::Result<()> = async {
            loop {
                let n = file.read(&mut piece).await?;
                if n == 0 {
                    break;
                }
                w.write_all(&piece[..n]).await?;
            }
            w.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            if let Err(abort) = w.abort().await {
                tracing::debug!(blob.key = %key, error = %abort, "could not abort a failed upload");
            }
            return Err(io(e));
        }
        // only now: a reader that misses the local copy finds the object in the store
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(Upload::Done),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // deleted while it was uploading (a duplicate copy, an index that refused
                // it): what was put must go too
                store.delete(&object).await.map_err(|source| Error::Blob { key: key.to_string(), source })?;
                Ok(Upload::Gone)
            }
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_whose_local_copy_was_deleted_meanwhile_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let remote: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let buffer = ReceiveBuffer::open(dir.path()).unwrap();
        assert_eq!(buffer.upload(&remote, "instances/1/20260101/nothing.dcm").await.unwrap(), Upload::Gone);
        std::fs::write(dir.path().join("notes.txt"), b"an operator's file").unwrap();
        assert!(buffer.pending().is_empty(), "only instances are buffered work");
        let key = "instances/1/20260101/x.dcm";
        std::fs::create_dir_all(dir.path().join("instances/1/20260101")).unwrap();
        std::fs::write(dir.path().join(key), b"bytes").unwrap();
        assert_eq!(buffer.upload(&remote, key).await.unwrap(), Upload::Done);
        assert!(!dir.path().join(key).exists());
        assert_eq!(&remote.get(&ObjectPath::from(key)).await.unwrap().bytes().await.unwrap()[..], b"bytes");
        // the day directory of a past day goes once empty
        buffer.prune_days();
        assert!(!dir.path().join("instances/1/20260101").exists());
    }
}
