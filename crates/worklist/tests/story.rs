//! Worklist stories without the hub: a real index (SQLite in a temp dir, and PostgreSQL when
//! the README's test command provides `READHUB_TEST_PG_URL`), instances ingested through
//! storage exactly as C-STORE and STOW-RS do, arrivals applied by the worklist's consumer,
//! and time moved by hand.

use std::sync::Arc;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use storage::{NodeName, Site, Storage, Transfer, Transfers};
use tempfile::TempDir;
use worklist::items::ItemView;
use worklist::{Error, EventKind, ItemState, ManualClock, Role, User, Worklist};

struct Bench {
    _dir: TempDir,
    storage: Storage,
    wl: Worklist,
    clock: Arc<ManualClock>,
    site: Site,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database URL for `backend`; None (skip) when PostgreSQL was not provided, which
/// fails instead when `CI` is set.
async fn database(backend: Backend, dir: &TempDir) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite:{}", dir.path().join("index.db").display())),
        Backend::Postgres => {
            let Ok(admin) = std::env::var("READHUB_TEST_PG_URL") else {
                assert!(std::env::var_os("CI").is_none(), "READHUB_TEST_PG_URL is not set, and CI must run every test");
                eprintln!("skipped: READHUB_TEST_PG_URL is not set (the README's test command sets it)");
                return None;
            };
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await.expect("connect to READHUB_TEST_PG_URL");
            let name = format!("readhub_w_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
            pool.close().await;
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&format!("/{name}"));
            Some(url.to_string())
        }
    }
}

async fn bench(backend: Backend) -> Option<Bench> {
    let dir = tempfile::tempdir().unwrap();
    let url = database(backend, &dir).await?;
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let storage = Storage::open(&url, &format!("file://{}", objects.display()), storage::Limits::default()).await.unwrap();
    let clock = ManualClock::new(1_795_399_200_000);
    let config = worklist::Config { quiet: worklist::quiet::QuietPeriods { default: Duration::from_secs(10), ..Default::default() }, ..Default::default() };
    let wl = Worklist::with_clock(storage.db.clone(), config, clock.clone());
    let consortium = wl.ensure_defaults().await.unwrap();
    let site = storage::sites::add_site(&storage.db, "Township-1", consortium, &["TOWNSHIP1".into()], None).await.unwrap();
    Some(Bench { _dir: dir, storage, wl, clock, site })
}

/// A small secondary-capture Part-10 file of `study`.
fn part10(study: &str, sop: &str, priority: Option<&str>) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    put(tags::SOP_CLASS_UID, VR::UI, uids::SECONDARY_CAPTURE_IMAGE_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, &format!("{study}.1"));
    put(tags::MODALITY, VR::CS, "OT");
    put(tags::PATIENT_ID, VR::LO, "P-STORY");
    put(tags::PATIENT_NAME, VR::PN, "Story^Patient");
    if let Some(p) = priority {
        put(tags::REQUESTED_PROCEDURE_PRIORITY, VR::CS, p);
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                .media_storage_sop_instance_uid(sop)
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        )
        .unwrap();
    let mut out = Vec::new();
    file.write_all(&mut out).unwrap();
    out
}

impl Bench {
    /// Ingest one instance in `transfer`, as STOW-RS does.
    async fn ingest(&self, transfer: &Transfer, study: &str, sop: &str, priority: Option<&str>) -> storage::StoredInstance {
        let mut w = self.storage.begin_part10(&self.site, transfer);
        w.write(&part10(study, sop, priority)).await.unwrap();
        w.finish().await.unwrap()
    }

    async fn reader(&self, name: &str) -> User {
        let pool = self.wl.pool_by_name("imaging").await.unwrap();
        self.wl.add_user(name, name, Role::Reader, None, Some(pool.id), "reader-password-1").await.unwrap()
    }

    async fn item_of(&self, study: &str) -> ItemView {
        let inst = self.ingested(study).await;
        self.wl.item_for_study(inst).await.unwrap().expect("the study has its item")
    }

    async fn ingested(&self, study: &str) -> worklist::StudyPk {
        let rows = storage::query::search_studies(
            &self.storage.db,
            storage::query::StudyFilter::All,
            &storage::query::StudyQuery { study_uids: vec![study.into()], ..Default::default() },
        )
        .await
        .unwrap();
        rows[0].pk
    }

    async fn trail(&self, item: &ItemView) -> Vec<EventKind> {
        self.wl.events(item.id).await.unwrap().into_iter().map(|e| e.0).collect()
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both!(from_arrival_to_signature, each_arrival_is_applied_once, instances_acknowledged_together_are_indexed_together, a_transfer_cut_off_by_a_crash_ends_at_the_next_start, transitions_start_only_from_their_states);

/// Two instances in one transfer open one item; it stays receiving while the transfer is
/// open and for the quiet period after it ends; two readers race for it and one wins; the
/// report is signed. The trail records each step once.
async fn from_arrival_to_signature(backend: Backend) {
    let Some(b) = bench(backend).await else { return };
    let transfers = Transfers::new(NodeName::new("story"));
    let t = transfers.begin("stow", "stow:story".into());
    let study = "1.2.826.0.1.3680043.8.498.90001";
    b.ingest(&t, study, &format!("{study}.1.1"), None).await;
    b.ingest(&t, study, &format!("{study}.1.2"), Some("STAT")).await;
    assert_eq!(b.wl.consume_arrivals().await.unwrap(), 2);
    let item = b.item_of(study).await;
    assert_eq!((item.state, item.num_instances), (ItemState::Receiving, 2));
    assert_eq!(item.priority, worklist::Priority::Stat, "a later instance's STAT raises the item");

    b.clock.advance(Duration::from_secs(60));
    assert_eq!(b.wl.promote_ready(b.wl.now()).await.unwrap(), 0, "the transfer is still open");
    storage::arrival::end_transfer(&b.storage.db, &t).await.unwrap();
    assert_eq!(b.wl.consume_arrivals().await.unwrap(), 1);
    assert_eq!(b.wl.promote_ready(b.wl.now()).await.unwrap(), 0, "the quiet period has not passed");
    b.clock.advance(Duration::from_secs(11));
    assert_eq!(b.wl.promote_ready(b.wl.now()).await.unwrap(), 1);

    let (r1, r2) = (b.reader("r1").await, b.reader("r2").await);
    let (a, c) = tokio::join!(b.wl.claim(item.id, &r1), b.wl.claim(item.id, &r2));
    assert!(a.is_ok() != c.is_ok(), "exactly one claimant wins: {a:?} / {c:?}");
    let (winner, loser) = if a.is_ok() { (&r1, &r2) } else { (&r2, &r1) };
    assert!(matches!(b.wl.release(item.id, loser).await, Err(Error::Conflict(_))));
    b.wl.save_draft(item.id, winner, "双肺纹理清晰。", "未见异常。").await.unwrap();
    b.wl.sign(item.id, winner).await.unwrap();
    let item = b.wl.item(item.id).await.unwrap();
    assert_eq!(item.state, ItemState::Reported);
    assert_eq!(
        b.trail(&item).await,
        [EventKind::Arrived, EventKind::Routed, EventKind::Ready, EventKind::Claimed, EventKind::Drafted, EventKind::Signed]
    );
}

/// Several consumers (processes) on one database: every arrival is applied exactly once.
async fn each_arrival_is_applied_once(backend: Backend) {
    let Some(b) = bench(backend).await else { return };
    let transfers = Transfers::new(NodeName::new("story"));
    let studies: Vec<String> = (0..12).map(|i| format!("1.2.826.0.1.3680043.8.498.91{i:03}")).collect();
    for (i, s) in studies.iter().enumerate() {
        let t = transfers.begin("assoc", format!("dimse:T{i}"));
        for n in 0..5 {
            b.ingest(&t, s, &format!("{s}.1.{n}"), None).await;
        }
        storage::arrival::end_transfer(&b.storage.db, &t).await.unwrap();
    }
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let wl = Worklist::with_clock(b.storage.db.clone(), b.wl.config.clone(), b.clock.clone());
            tokio::spawn(async move { wl.consume_arrivals().await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for c in consumers {
        applied += c.await.unwrap();
    }
    assert_eq!(applied, 12 * 6, "60 instances and 12 transfer ends, each applied once");
    assert_eq!(storage::arrival::pending(&b.storage.db).await.unwrap(), 0);
    for s in &studies {
        let item = b.item_of(s).await;
        assert_eq!(item.num_instances, 5);
        let trail = b.trail(&item).await;
        assert_eq!(trail, [EventKind::Arrived, EventKind::Routed], "{s}: one item, opened once");
    }
}

/// Many senders at once (on SQLite their index rows share commits: storage's group commit):
/// each instance is indexed once with the right outcome, a re-send of the same bytes is a
/// duplicate, and each new instance has exactly one arrival.
async fn instances_acknowledged_together_are_indexed_together(backend: Backend) {
    let Some(b) = bench(backend).await else { return };
    let b = std::sync::Arc::new(b);
    let transfers = std::sync::Arc::new(Transfers::new(NodeName::new("story")));
    let study = "1.2.826.0.1.3680043.8.498.92001";
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let (b, transfers) = (b.clone(), transfers.clone());
            tokio::spawn(async move {
                let t = transfers.begin("assoc", format!("dimse:T{i}"));
                // 32 distinct instances, and 16 sent a second time by another sender
                let sop = format!("{study}.1.{}", i % 32);
                let mut w = b.storage.begin_part10(&b.site, &t);
                w.write(&part10(study, &sop, None)).await.unwrap();
                let stored = w.finish().await.unwrap();
                (sop, stored.outcome)
            })
        })
        .collect();
    let mut outcomes = std::collections::HashMap::<String, Vec<storage::IngestOutcome>>::new();
    for t in tasks {
        let (sop, outcome) = t.await.unwrap();
        outcomes.entry(sop).or_default().push(outcome);
    }
    assert_eq!(outcomes.len(), 32);
    for (sop, o) in &outcomes {
        let stored = o.iter().filter(|x| **x == storage::IngestOutcome::Stored).count();
        let duplicates = o.iter().filter(|x| **x == storage::IngestOutcome::Duplicate).count();
        assert_eq!((stored, duplicates), (1, o.len() - 1), "{sop}: {o:?}");
    }
    assert_eq!(storage::arrival::pending(&b.storage.db).await.unwrap(), 32, "one arrival per new instance");
    assert_eq!(b.wl.consume_arrivals().await.unwrap(), 32);
    assert_eq!(b.item_of(study).await.num_instances, 32);
}

/// A process died with a transfer open: at its next start the transfer is ended, and the
/// study is ready after the quiet period.
async fn a_transfer_cut_off_by_a_crash_ends_at_the_next_start(backend: Backend) {
    let Some(b) = bench(backend).await else { return };
    let node = NodeName::new("county-1");
    let before_crash = Transfers::new(node.clone());
    let t = before_crash.begin("assoc", "dimse:TOWNSHIP1".into());
    let study = "1.2.826.0.1.3680043.8.498.92001";
    b.ingest(&t, study, &format!("{study}.1.1"), None).await;
    b.wl.consume_arrivals().await.unwrap();
    // an instance acknowledged just before the crash, not yet applied
    b.ingest(&t, study, &format!("{study}.1.2"), None).await;

    // the next start of the same node; another node's open transfer is left alone
    let other = Transfers::new(NodeName::new("county-2")).begin("assoc", "dimse:T2".into());
    let other_study = "1.2.826.0.1.3680043.8.498.92002";
    b.ingest(&other, other_study, &format!("{other_study}.1.1"), None).await;
    assert_eq!(b.wl.recover_transfers(&node).await.unwrap(), 1);
    b.wl.consume_arrivals().await.unwrap();
    b.clock.advance(Duration::from_secs(11));
    assert_eq!(b.wl.promote_ready(b.wl.now()).await.unwrap(), 1);
    let item = b.item_of(study).await;
    assert_eq!((item.state, item.num_instances), (ItemState::Ready, 2));
    assert_eq!(b.item_of(other_study).await.state, ItemState::Receiving, "another node's transfer is still open");
}

/// A transition starts only from its states: a receiving item cannot be claimed or
/// returned, a ready one cannot be signed, and a refused transition records nothing.
async fn transitions_start_only_from_their_states(backend: Backend) {
    let Some(b) = bench(backend).await else { return };
    let transfers = Transfers::new(NodeName::new("story"));
    let t = transfers.begin("stow", "stow:story".into());
    let study = "1.2.826.0.1.3680043.8.498.93001";
    b.ingest(&t, study, &format!("{study}.1.1"), None).await;
    b.wl.consume_arrivals().await.unwrap();
    let item = b.item_of(study).await;
    let r = b.reader("r1").await;
    assert!(matches!(b.wl.claim(item.id, &r).await, Err(Error::Conflict(m)) if m.contains("receiving")));
    assert!(matches!(b.wl.reject(item.id, worklist::RejectReason::Motion, "", &r).await, Err(Error::Forbidden(_))));
    storage::arrival::end_transfer(&b.storage.db, &t).await.unwrap();
    b.wl.consume_arrivals().await.unwrap();
    b.clock.advance(Duration::from_secs(11));
    b.wl.promote_ready(b.wl.now()).await.unwrap();
    assert!(matches!(b.wl.sign(item.id, &r).await, Err(Error::Conflict(_))), "nothing to sign on a ready item");
    assert!(matches!(b.wl.renew(item.id, &r).await, Err(Error::Conflict(_))), "no lease to renew");
    assert_eq!(b.trail(&item).await, [EventKind::Arrived, EventKind::Routed, EventKind::Ready]);
}
