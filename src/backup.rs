//! `readhub backup DEST` and `readhub restore SRC` for an embedded install (SQLite and the
//! local object store), online: the hub keeps receiving while it runs.
//!
//! Consistency without stopping ingest: the index is copied first, as one snapshot
//! (`VACUUM INTO`, a read transaction, so writers go on); then the objects. Every object is
//! written once under a key of its own and never changed (a new version is a new object),
//! so every object the snapshot names is already complete on disk and is copied as it is;
//! objects that arrive later are copied too or not, and are then simply not named. The
//! backup is checked before it is called done: every object its index names is in it.
//!
//! PostgreSQL + S3 installs are backed up with their engines' own tools (README: Backup).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sqlx::Row;

const INDEX_FILE: &str = "readhub.db";
const OBJECTS_DIR: &str = "objects";
const MANIFEST: &str = "BACKUP.txt";

/// What a backup holds.
#[derive(Debug)]
pub struct Made {
    pub studies: i64,
    pub instances: i64,
    pub reports: i64,
    pub users: i64,
    pub object_files: u64,
    pub bytes: u64,
}

/// The embedded install's paths, or why this install is not one.
fn embedded(config: &crate::Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let db = config.database_url()?;
    let Some(db_path) = db.strip_prefix("sqlite:").map(|p| p.split('?').next().unwrap_or(p).trim_start_matches("//").to_string()) else {
        bail!(
            "this install keeps its index in PostgreSQL: back it up with pg_dump or continuous archiving (PITR), and the \
             bucket with its versioning (README: Backup) / PostgreSQL 请用 pg_dump 或 PITR 备份"
        );
    };
    let objects = config.object_store_url()?;
    let Some(objects_path) = url::Url::parse(&objects).ok().filter(|u| u.scheme() == "file").and_then(|u| u.to_file_path().ok()) else {
        bail!("this install keeps its instances in {objects}: back the bucket up with its versioning or replication (README: Backup)");
    };
    Ok((PathBuf::from(db_path), objects_path))
}

pub async fn backup(config: &crate::Config, storage: &storage::Storage, dest: &Path) -> anyhow::Result<Made> {
    let (_, objects) = embedded(config)?;
    if dest.exists() && std::fs::read_dir(dest).with_context(|| format!("cannot read {}", dest.display()))?.next().is_some() {
        bail!("{} is not empty: give a new folder for the backup / 备份目录必须为空", dest.display());
    }
    std::fs::create_dir_all(dest.join(OBJECTS_DIR)).with_context(|| format!("cannot create {}", dest.display()))?;
    let index = dest.join(INDEX_FILE);
    // 1. the index, one consistent snapshot, while writers go on
    let target = index.to_str().context("the backup path is not UTF-8")?.replace('\'', "''");
    sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
        .execute(storage.db.pool())
        .await
        .context("the index could not be copied (VACUUM INTO)")?;
    // 2. the objects: complete and immutable once named by the snapshot
    let src = objects.clone();
    let to = dest.join(OBJECTS_DIR);
    let (files, bytes) = tokio::task::spawn_blocking(move || copy_tree(&src, &to)).await??;
    // 3. checked: every object the snapshot names is in the backup
    let made = check(&index, &dest.join(OBJECTS_DIR), files, bytes).await?;
    std::fs::write(
        dest.join(MANIFEST),
        format!(
            "readhub {} backup, made {}\nstudies {}\ninstances {}\nreports {}\nusers {}\nobject files {}\nbytes {}\n\
             restore with: readhub --data-dir EMPTY_DIR restore {}\n",
            env!("CARGO_PKG_VERSION"),
            chrono::Utc::now().to_rfc3339(),
            made.studies,
            made.instances,
            made.reports,
            made.users,
            made.object_files,
            made.bytes,
            dest.display()
        ),
    )?;
    sync_dir(dest)?;
    Ok(made)
}

pub async fn restore(config: &crate::Config, src: &Path) -> anyhow::Result<Made> {
    let (db_path, objects) = embedded(config)?;
    let index = src.join(INDEX_FILE);
    if !index.is_file() || !src.join(OBJECTS_DIR).is_dir() {
        bail!("{} is not a readhub backup (no {INDEX_FILE} and {OBJECTS_DIR}/ in it)", src.display());
    }
    let occupied = db_path.exists() || (objects.exists() && std::fs::read_dir(&objects)?.next().is_some());
    if occupied {
        bail!(
            "the data directory {} already holds an install: restore into an empty one (set --data-dir) / 目标数据目录非空",
            config.data_dir.display()
        );
    }
    let made = check(&index, &src.join(OBJECTS_DIR), 0, 0).await.context("the backup is incomplete; nothing was restored")?;
    std::fs::create_dir_all(&objects)?;
    let (from, to) = (src.join(OBJECTS_DIR), objects.clone());
    let (files, bytes) = tokio::task::spawn_blocking(move || copy_tree(&from, &to)).await??;
    // the index last: an interrupted restore leaves no index that names missing objects
    let partial = db_path.with_extension("db.restoring");
    std::fs::copy(&index, &partial)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &db_path)?;
    sync_dir(db_path.parent().unwrap_or(Path::new(".")))?;
    Ok(Made { object_files: files, bytes, ..made })
}

/// Count what the index at `index` holds and check that every object it names is under
/// `objects`.
async fn check(index: &Path, objects: &Path, files: u64, bytes: u64) -> anyhow::Result<Made> {
    use sqlx::ConnectOptions;
    let opts: sqlx::sqlite::SqliteConnectOptions = format!("sqlite:{}?mode=ro", index.display()).parse()?;
    let mut conn = opts.connect().await.with_context(|| format!("cannot open {}", index.display()))?;
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let mut n = Vec::new();
    for t in ["studies", "instances", "reports", "users"] {
        n.push(sqlx::query(sqlx::AssertSqlSafe(count(t))).fetch_one(&mut conn).await?.get::<i64, _>(0));
    }
    let keys: Vec<String> = sqlx::query("SELECT blob_key FROM instances").fetch_all(&mut conn).await?.iter().map(|r| r.get(0)).collect();
    let missing: Vec<&String> = keys.iter().filter(|k| !objects.join(k).is_file()).collect();
    if !missing.is_empty() {
        bail!("{} object(s) named by the index are missing, e.g. {}", missing.len(), missing[0]);
    }
    Ok(Made { studies: n[0], instances: n[1], reports: n[2], users: n[3], object_files: files, bytes })
}

/// Copy every file under `from` to `to` (made durable), leaving out the staging files of
/// uploads in progress (`key#n`). Returns (files, bytes).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(from)?;
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || name.rsplit_once('#').is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        bytes += std::fs::copy(entry.path(), &target).with_context(|| format!("cannot copy {}", entry.path().display()))?;
        std::fs::File::open(&target)?.sync_all()?;
        files += 1;
    }
    Ok((files, bytes))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
