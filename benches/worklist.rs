//! Worklist benchmark (run by hand: `cargo bench --bench worklist`; figures go in
//! BENCHMARKS.md). A queue of N open items (default 100,000) across 200 sites in one pool,
//! on SQLite and, when READHUB_BENCH_PG_URL names a PostgreSQL server, on PostgreSQL:
//!   - claim-next latency (p50/p95/p99), one reader at a time and 8 readers at once;
//!   - the first page of the queue;
//!   - routing decisions per second against a 20-rule set.

use std::time::{Duration, Instant};

use storage::Storage;
use worklist::routing::{Rule, StudyFacts};
use worklist::{Config, Priority, Role, Worklist};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn fill(wl: &Worklist, n: usize) -> anyhow::Result<Vec<worklist::SiteId>> {
    let db = &wl.db;
    let consortium = wl.ensure_defaults().await?;
    let pool = wl.pool_by_name("imaging").await?.id;
    let mut sites = Vec::new();
    for s in 0..200 {
        let site = storage::sites::add_site(db, &format!("Site-{s:03}"), consortium, &[format!("AE{s:03}")], None).await?;
        sites.push(site.id);
    }
    let now = storage::now_ms();
    const BATCH: usize = 500;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut tx = db.begin_write().await?;
        // patients, studies, items: one multi-row INSERT each per batch
        let rows = |cols: usize, first: usize| {
            (0..end - start)
                .map(|r| format!("({})", (0..cols).map(|c| format!("${}", first + r * cols + c)).collect::<Vec<_>>().join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!("INSERT INTO patients (site_id, issuer, patient_id, name) VALUES {}", rows(4, 1));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in start..end {
            q = q.bind(sites[i % 200]).bind(format!("READHUB:Site-{:03}", i % 200)).bind(format!("P{i:07}")).bind(format!("Bench^P{i}"));
        }
        q.execute(&mut *tx).await?;
        let sql = format!(
            "INSERT INTO studies (site_id, patient_id, study_uid, modalities, first_received_at, last_received_at, num_series, num_instances) \
             SELECT p.site_id, p.id, '1.2.826.0.1.3680043.10.9.9.' || p.patient_id, 'DX', {now}, {now}, 1, 1 FROM patients p \
             WHERE p.patient_id IN ({})",
            (0..end - start).map(|r| format!("${}", r + 1)).collect::<Vec<_>>().join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in start..end {
            q = q.bind(format!("P{i:07}"));
        }
        q.execute(&mut *tx).await?;
        // priorities 5% STAT, 15% urgent, the rest routine; deadlines spread over a day
        let sql = format!(
            "INSERT INTO worklist_items (study_id, site_id, pool_id, priority, state, routed_by, last_instance_at, ready_at, \
               created_at, updated_at, deadline_at) \
             SELECT st.id, st.site_id, {pool}, \
               CASE WHEN st.id % 20 = 0 THEN 0 WHEN st.id % 20 < 4 THEN 1 ELSE 2 END, 'ready', 'bench', {now}, {now}, {now}, {now}, \
               {now} + (st.id % 1440) * 60000 \
             FROM studies st WHERE st.id NOT IN (SELECT study_id FROM worklist_items) AND st.study_uid LIKE '1.2.826.0.1.3680043.10.9.9.%'"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(sites)
}

async fn run(label: &str, database_url: &str, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = Storage::open(database_url, &format!("file://{}", dir.path().join("objects").display()), Default::default()).await?;
    let wl = Worklist::new(storage.db.clone(), Config::default());
    let t = Instant::now();
    fill(&wl, n).await?;
    println!("{label}: {n} open items across 200 sites inserted in {:.1} s", t.elapsed().as_secs_f64());
    let pool = wl.pool_by_name("imaging").await?.id;
    let mut readers = Vec::new();
    for r in 0..8 {
        readers.push(wl.add_user(&format!("bench-r{r}"), "", Role::Reader, None, Some(pool), "bench-password").await?);
    }

    // one reader, claim after claim
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let item = wl.claim_next(&readers[0]).await?.expect("an item");
        lat.push(t.elapsed());
        assert_eq!(item.priority, Priority::Stat, "STAT first");
    }
    lat.sort();
    println!("| {label} | claim next, 1 reader | {:.2} | {:.2} | {:.2} |", pct(&lat, 50.0), pct(&lat, 95.0), pct(&lat, 99.0));

    // eight readers at once
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for r in readers.iter().cloned() {
        let wl = wl.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for _ in 0..250 {
                let t = Instant::now();
                wl.claim_next(&r).await.expect("claim").expect("an item");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "| {label} | claim next, 8 readers ({:.0} claims/s) | {:.2} | {:.2} | {:.2} |",
        lat.len() as f64 / secs,
        pct(&lat, 50.0),
        pct(&lat, 95.0),
        pct(&lat, 99.0)
    );

    // the first page of the queue
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = wl.queue_page(pool, 100).await?;
        lat.push(t.elapsed());
        assert_eq!(page.len(), 100);
    }
    lat.sort();
    println!("| {label} | queue, first 100 | {:.2} | {:.2} | {:.2} |", pct(&lat, 50.0), pct(&lat, 95.0), pct(&lat, 99.0));

    // routing: 20 rules, the matching one near the end for half the studies
    wl.add_pool(1, "ct-specialists", worklist::PoolKind::Imaging).await?;
    let mut rules: Vec<Rule> = (0..19)
        .map(|i| Rule { name: format!("r{i}"), sites: vec![format!("Site-{i:03}")], modalities: vec!["MR".into()], pool: "imaging".into(), ..Default::default() })
        .collect();
    rules.push(Rule { name: "ct".into(), modalities: vec!["CT".into()], pool: "ct-specialists".into(), ..Default::default() });
    wl.install_rules(&rules, "bench").await?;
    let t = Instant::now();
    let m = 5000;
    for i in 0..m {
        let site = format!("Site-{:03}", i % 200);
        let d = wl
            .route(&StudyFacts {
                site: &site,
                consortium: "default",
                consortium_id: 1,
                modality: Some(if i % 2 == 0 { "CT" } else { "DX" }),
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
                body_part: Some("CHEST"),
                study_description: None,
                priority: Priority::Routine,
                is_ecg: false,
                at: storage::now_ms(),
            })
            .await?;
        assert!(d.routed_by.ends_with(if i % 2 == 0 { ":ct" } else { ":fallback" }));
    }
    let secs = t.elapsed().as_secs_f64();
    println!("| {label} | routing decision (20 rules) | {:.3} ms mean | {:.0} decisions/s | |", secs * 1000.0 / m as f64, m as f64 / secs);
    storage.db.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    println!("| backend | operation | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    run("SQLite", &format!("sqlite:{}", dir.path().join("bench.db").display()), n).await?;
    if let Ok(admin) = std::env::var("READHUB_BENCH_PG_URL") {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&admin).await?;
        let name = format!("readhub_bench_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
        let mut url = url::Url::parse(&admin)?;
        url.set_path(&format!("/{name}"));
        run("PostgreSQL", url.as_str(), n).await?;
    } else {
        println!("(PostgreSQL skipped: set READHUB_BENCH_PG_URL)");
    }
    Ok(())
}
