//! The memory budget of decoding: rendering, decoded frames and transcoding hold the stored
//! file and its decoded pixels in memory at once, so what a burst of such requests costs
//! must not grow with the number of requests. Each job reserves its estimated share of one
//! budget before it loads anything; the others wait their turn (first come, first served,
//! as tokio's semaphore is fair), and one that waits too long is told to retry.

use std::sync::Arc;
use std::time::Duration;

use storage::query::InstanceRow;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long a decoding request waits for its share before it is answered 503.
const MAX_WAIT: Duration = Duration::from_secs(60);

const MIB: u64 = 1024 * 1024;

/// The shared budget, in MiB, and the threads that decode.
#[derive(Clone, Debug)]
pub struct MediaBudget {
    permits: Arc<Semaphore>,
    total_mib: u32,
    pool: DecodePool,
    films: Arc<Films>,
}

/// Films decoded lately, most recent first, for rendering them again in another window or
/// size without decoding again (8 readers opening the same film decode it once). Each holds
/// its share of the budget while kept, so what is kept and what is being decoded together
/// stay within the budget; at most a quarter of it is kept, and all of it is let go when a
/// request would otherwise wait for its share.
#[derive(Debug, Default)]
struct Films {
    kept: std::sync::Mutex<std::collections::VecDeque<Film>>,
    /// one lock per film being decoded: a burst of requests for the same film decodes it
    /// once, the others wait and take it from `kept`
    decoding: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a film is decoded (see [`MediaBudget::decoding`]).
pub struct Decoding {
    films: Arc<Films>,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Decoding {
    fn drop(&mut self) {
        let mut d = self.films.decoding.lock().unwrap_or_else(|p| p.into_inner());
        // the last one out removes the lock (the map holds one reference, each holder one)
        if d.get(&self.key).is_some_and(|l| Arc::strong_count(l) <= 2) {
            d.remove(&self.key);
        }
    }
}

struct Film {
    key: String,
    film: Arc<dicom_media::render::Decoded>,
    mib: u32,
    _share: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Film {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Film({}, {} MiB)", self.key, self.mib)
    }
}

/// A few long-lived threads that run every decoding job. Not tokio's blocking pool: that
/// starts a new thread whenever none is idle, and each new thread's malloc arena keeps
/// the ~100 MiB a film's decoding freed, so peak RSS grew with the number of renders even
/// when the budget let only one run at a time (16 queued full renders of a 2500×3000 DX:
/// peak 385 MiB on the blocking pool, 336 MiB here; one render alone: 189–214 MiB).
#[derive(Clone)]
struct DecodePool(Arc<rayon::ThreadPool>);

impl std::fmt::Debug for DecodePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecodePool({} threads)", self.0.current_num_threads())
    }
}

impl DecodePool {
    fn new(threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|n| format!("decode-{n}"))
            // deep enough for dicom-object's recursion at the 128-level nesting limit
            .stack_size(8 << 20)
            // a panic in one job must not take the process down (rayon aborts by default)
            .panic_handler(|_| tracing::error!("a decoding job panicked"))
            .build()
            .expect("the decoding threads can be started");
        DecodePool(Arc::new(pool))
    }
}

/// A share of the budget, given back when dropped (when the job's buffers are gone).
#[derive(Debug)]
pub struct Share(#[allow(dead_code)] OwnedSemaphorePermit);

impl MediaBudget {
    pub fn new(total_mib: u32) -> Self {
        let total_mib = total_mib.max(16);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
        MediaBudget { permits: Arc::new(Semaphore::new(total_mib as usize)), total_mib, pool: DecodePool::new(threads), films: Arc::default() }
    }

    /// What rendering a frame of a film already decoded holds: the 8-bit picture and the
    /// encoder's buffers, about 4 bytes a pixel (not the 16 of a decode from the file).
    pub fn render_cost(rows: Option<i64>, columns: Option<i64>) -> u32 {
        let pixels = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
        let bytes = pixels(rows).saturating_mul(pixels(columns)).saturating_mul(4);
        u32::try_from(bytes.div_ceil(MIB).max(1)).unwrap_or(u32::MAX)
    }

    /// Wait until no other request is decoding the film at `blob_key`, and hold it while
    /// this one does (then look in [`decoded`](Self::decoded) again: the other may have
    /// left it there).
    pub async fn decoding(&self, blob_key: &str) -> Decoding {
        let lock = self
            .films
            .decoding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(blob_key.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        Decoding { films: self.films.clone(), key: blob_key.to_string(), _guard: guard }
    }

    /// The film stored at `blob_key`, if it was decoded lately.
    pub fn decoded(&self, blob_key: &str) -> Option<Arc<dicom_media::render::Decoded>> {
        let mut kept = self.films.kept.lock().unwrap_or_else(|p| p.into_inner());
        let at = kept.iter().position(|f| f.key == blob_key)?;
        let f = kept.remove(at)?;
        let film = f.film.clone();
        kept.push_front(f);
        Some(film)
    }

    /// Keep a decoded film for the next request, within a quarter of the budget (the least
    /// recently used let go first); not kept when the budget is in use by requests.
    pub fn keep_decoded(&self, blob_key: &str, film: Arc<dicom_media::render::Decoded>) {
        let limit = self.total_mib / 4;
        let mib = u32::try_from(film.size().div_ceil(MIB as usize)).unwrap_or(u32::MAX).max(1);
        if mib > limit {
            return;
        }
        let mut kept = self.films.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|f| f.key != blob_key);
        while kept.iter().map(|f| f.mib).sum::<u32>() + mib > limit {
            kept.pop_back();
        }
        if let Ok(share) = self.permits.clone().try_acquire_many_owned(mib) {
            kept.push_front(Film { key: blob_key.to_string(), film, mib, _share: share });
        }
    }

    /// Let go of every kept film (their shares go back to the budget).
    fn let_go_of_films(&self) {
        self.films.kept.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// What decoding `frames` frames of `inst` holds at once, in MiB (0 frames: the file
    /// alone, as when frames are sent as stored): the stored file, and
    /// per frame its samples decoded and converted for output: 16 bytes a pixel, as
    /// measured (one full render of a 2500×3000 16-bit DX, a 15 MB file, added 120–130 MiB
    /// to peak RSS: the file, its parsed copy, the decoded samples as floats, the 8-bit image).
    pub fn cost(inst: &InstanceRow, frames: u32) -> u32 {
        Self::cost_of(inst.size_bytes, inst.rows, inst.columns, frames)
    }

    /// [`cost`](Self::cost) from the file's size and the frame's rows and columns.
    pub fn cost_of(size_bytes: i64, rows: Option<i64>, columns: Option<i64>, frames: u32) -> u32 {
        let file = u64::try_from(size_bytes).unwrap_or(0);
        let pixels = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
        let frame = pixels(rows).saturating_mul(pixels(columns)).saturating_mul(16);
        // the file and dicom-object's parsed copy of it are both held while decoding
        let bytes = file.saturating_mul(2).saturating_add(frame.saturating_mul(u64::from(frames)));
        u32::try_from(bytes.div_ceil(MIB).max(1)).unwrap_or(u32::MAX)
    }

    /// Run a decoding job on the decoding threads (hold a [`Share`] while it runs).
    pub async fn decode<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.0.spawn(move || {
            let _ = tx.send(job());
        });
        rx.await.map_err(|_| ApiError::Internal("a decoding job failed (see the log)".into()))
    }

    /// Wait for `mib` of the budget. A job larger than the whole budget waits for all of
    /// it, so it runs alone rather than never.
    pub async fn reserve(&self, mib: u32) -> Result<Share, ApiError> {
        let want = mib.clamp(1, self.total_mib);
        if self.permits.available_permits() < want as usize {
            // a request comes before films kept for a next one
            self.let_go_of_films();
        }
        tracing::debug!(mib, want, available = self.permits.available_permits(), "decoding budget: reserving");
        match tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(Share(permit)),
            Ok(Err(_)) => Err(ApiError::Internal("the decoding budget is closed".into())),
            Err(_) => Err(ApiError::Unavailable(
                "images are being decoded for many requests at once; try again shortly / 服务器繁忙, 请稍后重试".into(),
            )),
        }
    }

    /// MiB not reserved right now.
    pub fn available_mib(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_queue_behind_the_budget() {
        let budget = MediaBudget::new(100);
        let a = budget.reserve(60).await.unwrap();
        assert_eq!(budget.available_mib(), 40);
        // a second 60 MiB job waits until the first is done
        let b2 = budget.clone();
        let waiting = tokio::spawn(async move { b2.reserve(60).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(a);
        waiting.await.unwrap().unwrap();
        // larger than everything: runs alone
        let whole = budget.reserve(5_000).await.unwrap();
        assert_eq!(budget.available_mib(), 0);
        drop(whole);
        assert_eq!(budget.available_mib(), 100);
    }

    #[tokio::test]
    async fn jobs_run_on_the_decoding_threads_and_a_panic_is_an_error() {
        let budget = MediaBudget::new(100);
        let name = budget.decode(|| std::thread::current().name().unwrap_or_default().to_string()).await.unwrap();
        assert!(name.starts_with("decode-"), "{name}");
        let failed = budget.decode(|| -> u32 { panic!("a broken film") }).await;
        assert!(failed.is_err());
        assert_eq!(budget.decode(|| 7).await.unwrap(), 7, "the thread lives on");
    }

    #[tokio::test]
    async fn decoded_films_are_kept_within_a_quarter_and_let_go_for_requests() {
        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/pydicom-data/RG1_UNCR.dcm")).unwrap();
        let film = Arc::new(dicom_media::render::Decoded::new(&file).unwrap());
        let mib = film.size().div_ceil(MIB as usize) as usize; // 7 MiB of 16-bit samples
        let budget = MediaBudget::new(40);
        budget.keep_decoded("a", film.clone());
        assert!(budget.decoded("a").is_some());
        assert_eq!(budget.available_mib(), 40 - mib, "a kept film holds its share");
        budget.keep_decoded("b", film.clone());
        assert!(budget.decoded("b").is_some() && budget.decoded("a").is_none(), "a quarter (10 MiB) holds one: the older let go");
        // a request that needs more than is free comes first: every kept film is let go
        let share = budget.reserve((40 - mib + 1) as u32).await.unwrap();
        assert!(budget.decoded("b").is_none());
        drop(share);
        assert_eq!(budget.available_mib(), 40);
        let small = MediaBudget::new(16);
        small.keep_decoded("c", film);
        assert!(small.decoded("c").is_none(), "larger than a quarter of the budget: not kept");
    }
}
