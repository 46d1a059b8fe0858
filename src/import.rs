//! `readhub import PATH…`: bring an existing archive in. Folders are walked (a DICOMDIR is
//! read for the files it names), and every file goes through the one way in that C-STORE and
//! STOW-RS use (`Storage::begin_part10`): the same validation, the site given by `--site`,
//! byte-identical duplicates recognised. Files run in parallel, a re-run skips what is in
//! (resumable after a stop), a progress bar shows files, bytes, rate and ETA, and the summary
//! names every refused file and why.
//!
//! By default the imported studies are history (the priors of later studies), not reading
//! work: their instances arrive on an `archive` transfer, which the worklist does not queue.
//! `--for-reading` queues them like any other arrival.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use storage::{IngestOutcome, Storage};
use tokio::io::AsyncReadExt;

/// Files handed to one transfer (one "association"): its end tells the worklist the studies
/// in it may be ready, so an import of hours does not hold every study until the end.
const FILES_PER_TRANSFER: usize = 200;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub site: String,
    pub jobs: usize,
    pub for_reading: bool,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub stored: u64,
    pub new_versions: u64,
    /// in before this run (a re-run, or the same file twice)
    pub already_in: u64,
    pub refused: Vec<(PathBuf, String)>,
    pub bytes: u64,
    pub elapsed: Duration,
}

pub async fn run(storage: &Storage, node: &storage::NodeName, opts: &Options) -> anyhow::Result<Summary> {
    let site = storage::sites::site_by_name(&storage.db, &opts.site)
        .await?
        .with_context(|| format!("there is no site named {:?}: add it first (readhub site add) / 站点不存在", opts.site))?;
    let mut refused = Vec::new();
    let files = collect(&opts.paths, &mut refused)?;
    let total_bytes: u64 = files.iter().map(|(_, size)| size).sum();
    let bar = progress(files.len() as u64, total_bytes);
    let started = Instant::now();
    let kind = if opts.for_reading { "import" } else { storage::arrival::ARCHIVE_KIND };
    // the import's own node name: its transfers are never taken for a crashed server's
    let transfers = storage::Transfers::new(storage::NodeName::new(format!("{node}+import")));
    let summary = Arc::new(Mutex::new(Summary { refused, ..Summary::default() }));
    let done_files = Arc::new(AtomicU64::new(0));
    let chunks: Vec<Vec<(PathBuf, u64)>> = files.chunks(FILES_PER_TRANSFER).map(<[_]>::to_vec).collect();
    // a chunk at a time per job, its files in order: a series' files stay together
    futures::stream::iter(chunks)
        .for_each_concurrent(opts.jobs.max(1), |chunk| {
            let (storage, site, transfers, summary, bar, done_files) =
                (storage.clone(), site.clone(), transfers.clone(), summary.clone(), bar.clone(), done_files.clone());
            async move {
                let transfer = transfers.begin(kind, "import".into());
                for (path, size) in chunk {
                    let outcome = import_one(&storage, &site, &transfer, &path).await;
                    let mut s = summary.lock().expect("summary lock");
                    match outcome {
                        Ok(Some(IngestOutcome::Duplicate)) | Ok(None) => s.already_in += 1,
                        Ok(Some(IngestOutcome::NewVersion)) => {
                            s.new_versions += 1;
                            s.bytes += size;
                        }
                        Ok(Some(_)) => {
                            s.stored += 1;
                            s.bytes += size;
                        }
                        Err(why) => {
                            bar.suspend(|| eprintln!("refused {}: {why}", path.display()));
                            s.refused.push((path.clone(), why));
                        }
                    }
                    drop(s);
                    let n = done_files.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.inc(size);
                    bar.set_message(format!("{n} files"));
                }
                if let Err(e) = storage::arrival::end_transfer(&storage.db, &transfer).await {
                    tracing::warn!(error = %e, "the end of an import transfer was not recorded; its studies wait for the stall horizon");
                }
            }
        })
        .await;
    bar.finish_and_clear();
    let mut summary = Arc::try_unwrap(summary).map_err(|_| anyhow::anyhow!("import tasks still running"))?.into_inner().expect("summary lock");
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn progress(files: u64, bytes: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{msg}} of {files} · {{bytes}}/{{total_bytes}} · {{binary_bytes_per_sec}} · ETA {{eta}}"
        ))
        .expect("a valid template"),
    );
    bar.set_message("0 files");
    bar
}

/// One file: None when the site holds its very bytes already (as any version), else what
/// the ingest path made of it, or why it refused it.
async fn import_one(storage: &Storage, site: &storage::Site, transfer: &storage::Transfer, path: &Path) -> Result<Option<IngestOutcome>, String> {
    let p = path.to_path_buf();
    let known = tokio::task::spawn_blocking(move || identify(&p)).await.map_err(|e| e.to_string())?;
    if let Some(id) = known {
        if id.sop_class_uid == MEDIA_DIRECTORY {
            return Err("a media directory (DICOMDIR), not an instance: name it on the command line to import the files it lists".into());
        }
        match storage::query::holds_bytes(&storage.db, site.id, &id.sop_instance_uid, &id.dataset_sha256).await {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => return Err(format!("the index cannot be read: {e}")),
        }
    }
    let mut writer = storage.begin_part10(site, transfer);
    let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read it: {e}"))?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(|e| format!("cannot read it: {e}"))?;
        if n == 0 {
            break;
        }
        if let Err(e) = writer.write(&buf[..n]).await {
            writer.abort().await;
            return Err(e.to_string());
        }
    }
    writer.finish().await.map(|inst| Some(inst.outcome)).map_err(|e| e.to_string())
}

/// Media Storage Directory Storage: a DICOMDIR, whatever its file is called.
const MEDIA_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// What the file meta group says a file is, and the SHA-256 of its data set (what ingest
/// keys duplicates on: the meta group is the sender's wrapping, not the instance).
struct Identity {
    sop_class_uid: String,
    sop_instance_uid: String,
    dataset_sha256: String,
}

/// None for anything that is not a well-formed Part-10 file: the ingest path then says what
/// is wrong with it, in the words it uses for C-STORE and STOW-RS.
fn identify(path: &Path) -> Option<Identity> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = vec![0u8; 144];
    file.read_exact(&mut head).ok()?;
    if &head[128..132] != b"DICM" || head[132..138] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return None;
    }
    let group_len = u32::from_le_bytes(head[140..144].try_into().ok()?) as usize;
    if group_len > 64 * 1024 {
        return None;
    }
    head.resize(144 + group_len, 0);
    file.read_exact(&mut head[144..]).ok()?;
    let meta = dicom_object::meta::FileMetaTable::from_reader(&head[128..]).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    Some(Identity {
        sop_class_uid: clean(meta.media_storage_sop_class_uid()),
        sop_instance_uid: clean(meta.media_storage_sop_instance_uid()),
        dataset_sha256: hex::encode(hasher.finalize()),
    })
}

/// Every file under the paths, sorted, each once, with its size; a DICOMDIR names the files
/// of its media (itself an index, not an instance). Paths that cannot be read are refused.
fn collect(paths: &[PathBuf], refused: &mut Vec<(PathBuf, String)>) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut files = std::collections::BTreeMap::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {} / 无法读取", p.display()))?;
        if meta.is_file() && is_dicomdir(p) {
            match dicomdir_files(p) {
                Ok(list) => {
                    for f in list {
                        match std::fs::metadata(&f) {
                            Ok(m) => {
                                files.insert(f, m.len());
                            }
                            Err(e) => refused.push((f, format!("named by the DICOMDIR but cannot be read: {e}"))),
                        }
                    }
                }
                Err(why) => refused.push((p.clone(), why)),
            }
        } else if meta.is_file() {
            files.insert(p.clone(), meta.len());
        } else {
            for entry in walkdir::WalkDir::new(p).follow_links(false).sort_by_file_name() {
                match entry {
                    Ok(e) if e.file_type().is_file() && !is_dicomdir(e.path()) => {
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        files.insert(e.into_path(), size);
                    }
                    Ok(_) => {}
                    Err(e) => refused.push((e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()), format!("cannot be read: {e}"))),
                }
            }
        }
    }
    Ok(files.into_iter().collect())
}

fn is_dicomdir(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
}

/// A DICOMDIR larger than this is not read (one of a full DVD is a few MB).
const MAX_DICOMDIR: u64 = 256 << 20;

/// Directory records nest no deeper than this (they are a flat sequence; a nested content
/// sequence inside a record is the most a real one holds).
const MAX_DICOMDIR_DEPTH: usize = 8;

/// The files a DICOMDIR names (Referenced File ID, relative to its folder). It is walked
/// with the header walker's bounds (size, nesting) before dicom-object parses it whole.
fn dicomdir_files(dicomdir: &Path) -> Result<Vec<PathBuf>, String> {
    use dicom_dictionary_std::tags;
    let size = std::fs::metadata(dicomdir).map_err(|e| e.to_string())?.len();
    if size > MAX_DICOMDIR {
        return Err(format!("a DICOMDIR of {size} bytes: larger than {MAX_DICOMDIR} bytes, not read; import its folder instead"));
    }
    let bytes = std::fs::read(dicomdir).map_err(|e| e.to_string())?;
    let at = storage::header::part10_dataset_offset(&bytes).ok_or("not a DICOM Part-10 file (no DICM preamble and file meta)")?;
    let mut walk = storage::header::HeaderSniffer::with_max_depth("1.2.840.10008.1.2.1", bytes.len() + 1, MAX_DICOMDIR_DEPTH)
        .map_err(|e| e.to_string())?;
    walk.feed(&bytes[at..]).and_then(|()| walk.finish().map(drop)).map_err(|e| format!("not a readable DICOMDIR: {e}"))?;
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(std::io::Cursor::new(&bytes[128..]))
        .map_err(|e| format!("not a readable DICOMDIR: {e}"))?;
    let root = dicomdir.parent().unwrap_or(Path::new("."));
    let records = obj
        .element(tags::DIRECTORY_RECORD_SEQUENCE)
        .map_err(|e| format!("a DICOMDIR without its directory records: {e}"))?;
    let items = records.items().ok_or("the directory records are not a sequence")?;
    let mut out = Vec::new();
    for item in items {
        if let Ok(id) = item.element(tags::REFERENCED_FILE_ID) {
            let parts: Vec<String> = id.to_multi_str().map_err(|e| e.to_string())?.iter().map(|s| s.trim().to_string()).collect();
            // a Referenced File ID is a path of components: never out of the media's folder
            if parts.iter().any(|c| c.is_empty() || c == ".." || c.contains('/') || c.contains('\\')) {
                return Err(format!("a DICOMDIR record names {parts:?}, outside its media"));
            }
            out.push(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DICOMDIR: preamble, file meta, then `body` (explicit VR little endian).
    fn dicomdir_with(body: &[u8]) -> tempfile::TempDir {
        let meta = dicom_object::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.1.3.10")
            .media_storage_sop_instance_uid("1.2.826.0.1.3680043.8.498.1")
            .transfer_syntax("1.2.840.10008.1.2.1")
            .build()
            .unwrap();
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta.write(&mut file).unwrap();
        file.extend_from_slice(body);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("DICOMDIR"), file).unwrap();
        dir
    }

    /// (0004,1220) Directory Record Sequence holding items nested `depth` deep.
    fn nested(depth: usize) -> Vec<u8> {
        let open = [0x04, 0x00, 0x20, 0x12, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
        let close = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(&open);
        }
        for _ in 0..depth {
            b.extend_from_slice(&close);
        }
        b
    }

    #[test]
    fn a_hostile_dicomdir_is_refused_before_it_is_parsed_whole() {
        let deep = dicomdir_with(&nested(10_000));
        let err = dicomdir_files(&deep.path().join("DICOMDIR")).unwrap_err();
        assert!(err.contains("not a readable DICOMDIR") && err.to_lowercase().contains("nest"), "{err}");
        let cut = dicomdir_with(&nested(3)[..30]);
        assert!(dicomdir_files(&cut.path().join("DICOMDIR")).unwrap_err().contains("not a readable DICOMDIR"));
        let fine = dicomdir_with(&nested(2));
        assert_eq!(dicomdir_files(&fine.path().join("DICOMDIR")).unwrap(), Vec::<PathBuf>::new(), "records without files name none");
    }
}
