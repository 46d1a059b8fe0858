//! The ECG background work of a node: analysing ECG instances that arrived by any path
//! (C-STORE, STOW-RS, upload; `viewer_api::ecg_analysis`), and the watched folders carts
//! drop their files into.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use viewer_api::{AppState, EcgRefused};

use crate::config::EcgWatch;

/// Where a node puts a file it has taken from a watched folder while it stores it: the
/// rename into it is the claim (atomic: of several nodes watching one folder, one wins).
const PROCESSING: &str = ".processing";

/// Analyse new ECGs every second, and scan the watched folders every `interval`, until the stop.
pub async fn run(st: AppState, folders: Vec<EcgWatch>, interval: Duration, node: String, mut stop: watch::Receiver<bool>) {
    let mut analyse = tokio::time::interval(Duration::from_secs(1));
    let mut scan = tokio::time::interval(interval.max(Duration::from_millis(200)));
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    // this node's mark on the files it takes (its name may hold any character)
    let tag = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(node.as_bytes())[..4])
    };
    for f in &folders {
        tracing::info!(site = %f.site, folder = %f.path.display(), "watching a folder for ECG files");
        // what this node had taken when it stopped goes back to be taken again
        if let Err(e) = put_back(&f.path, &tag).await {
            tracing::warn!(folder = %f.path.display(), error = %e, "watched ECG folder: files left in .processing cannot be put back");
        }
    }
    loop {
        tokio::select! {
            _ = analyse.tick() => {
                if let Err(e) = viewer_api::ecg_analysis::analyse_pending(&st).await {
                    tracing::warn!(error = %e, "ECG analysis failed; will retry");
                }
            }
            _ = scan.tick(), if !folders.is_empty() => {
                for f in &folders {
                    if let Err(e) = scan_folder(&st, f, &tag, &mut seen).await {
                        tracing::warn!(site = %f.site, folder = %f.path.display(), error = %e, "watched ECG folder cannot be scanned");
                    }
                }
            }
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
}

/// One scan: every regular file whose size and time are what they were at the last scan
/// (the cart has finished writing it) is stored, then moved to `done/`; a file readhub
/// cannot read goes to `refused/` with the reason beside it; a file the hub cannot store
/// now (storage down) stays for the next scan.
async fn scan_folder(st: &AppState, f: &EcgWatch, tag: &str, seen: &mut HashMap<PathBuf, (u64, SystemTime)>) -> anyhow::Result<()> {
    let mut entries = tokio::fs::read_dir(&f.path).await?;
    let mut ready = Vec::new();
    while let Some(e) = entries.next_entry().await? {
        let meta = e.metadata().await?;
        let name = e.file_name().to_string_lossy().to_string();
        if !meta.is_file() || name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
            continue;
        }
        let stamp = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        let path = e.path();
        if seen.get(&path) == Some(&stamp) {
            ready.push((path, name, meta.len()));
        } else {
            seen.insert(path, stamp);
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let Some(site) = storage::sites::site_by_name(&st.storage.db, &f.site).await? else {
        anyhow::bail!("site {:?} does not exist: add it (readhub site add) or fix ecg_watch", f.site);
    };
    for (found, name, len) in ready {
        seen.remove(&found);
        // take it: another node watching the same folder may have been quicker
        let processing = f.path.join(PROCESSING);
        tokio::fs::create_dir_all(&processing).await?;
        let path = processing.join(format!("{tag}~{name}"));
        if tokio::fs::rename(&found, &path).await.is_err() {
            continue;
        }
        if len as usize > ecg::MAX_FILE_BYTES {
            refuse(&f.path, &path, &name, &format!("the file is {len} bytes, more than any ECG file")).await?;
            continue;
        }
        let bytes = tokio::fs::read(&path).await?;
        let result = viewer_api::ingest_ecg_file(st, &site, bytes, Some(name.clone()), format!("ecg-watch:{}", f.site)).await;
        let actor = audit::Actor { site_name: Some(site.name.clone()), role: Some("ecg-watch".into()), client: Some(f.path.display().to_string()), ..Default::default() };
        match result {
            Ok(i) => {
                tracing::info!(site = %site.name, file = %name, outcome = i.outcome, study = %i.study_instance_uid, "ECG file from the watched folder stored");
                st.audit
                    .record(
                        audit::Event::new(actor, audit::Action::Store, audit::Outcome::Success)
                            .subject(audit::Subject::Study(i.study_instance_uid.clone()))
                            .detail(format!("watched folder: {name}: {} {}", i.format, i.outcome)),
                    )
                    .await;
                move_into(&f.path.join("done"), &path, &name).await?;
            }
            Err(EcgRefused::Ingest(e)) if matches!(e, viewer_api::error::ApiError::Unavailable(_)) => {
                tracing::warn!(site = %site.name, file = %name, error = %e, "ECG file not stored now; it goes back for the next scan");
                tokio::fs::rename(&path, &found).await?;
            }
            Err(r) => {
                let reason = viewer_api::error::ApiError::from(r).to_string();
                tracing::warn!(site = %site.name, file = %name, reason = %reason, "ECG file from the watched folder refused");
                st.audit.record(audit::Event::new(actor, audit::Action::Store, audit::Outcome::Failed).detail(format!("watched folder: {name}: {reason}"))).await;
                refuse(&f.path, &path, &name, &reason).await?;
            }
        }
    }
    Ok(())
}

/// Files this node had taken (`.processing/TAG~NAME`) go back into the folder.
async fn put_back(folder: &Path, tag: &str) -> anyhow::Result<()> {
    let Ok(mut entries) = tokio::fs::read_dir(folder.join(PROCESSING)).await else { return Ok(()) };
    let prefix = format!("{tag}~");
    while let Some(e) = entries.next_entry().await? {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(original) = name.strip_prefix(&prefix) {
            tokio::fs::rename(e.path(), folder.join(original)).await?;
            tracing::info!(folder = %folder.display(), file = original, "watched ECG folder: a file taken before the stop is taken again");
        }
    }
    Ok(())
}

async fn refuse(folder: &Path, path: &Path, name: &str, reason: &str) -> anyhow::Result<()> {
    let target = move_into(&folder.join("refused"), path, name).await?;
    let mut note = target.into_os_string();
    note.push(".reason.txt");
    tokio::fs::write(&note, format!("{reason}\n")).await?;
    Ok(())
}

/// Move a file into `dir` (made if missing), under a name no earlier file there has.
async fn move_into(dir: &Path, path: &Path, name: &str) -> anyhow::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let mut target = dir.join(name);
    let mut n = 1;
    while tokio::fs::try_exists(&target).await? {
        target = dir.join(format!("{n}-{name}"));
        n += 1;
    }
    tokio::fs::rename(path, &target).await?;
    Ok(target)
}
