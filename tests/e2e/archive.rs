//! Bringing an old archive in (`readhub import`) and taking an install out and back
//! (`readhub backup` while it serves, `readhub restore` into an empty data directory), with
//! the real binary.

use super::*;

use super::served::{cli, serve, Served};

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    super::readhub_cli(dir, None, args, None)
}

async fn basic_get(node: &Served, who: (&str, &str), path: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("http://{}{path}", node.http)).basic_auth(who.0, Some(who.1)).send().await.unwrap()
}

/// The summary line's figures: (new instances, new versions, already in, refused), from
/// "imported N new instances and V new versions (…); A already in; R refused; in S s".
fn summary(out: &str) -> (u64, u64, u64, u64) {
    let line = out.lines().find(|l| l.starts_with("imported ")).unwrap_or_else(|| panic!("no summary: {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |w: &str| -> u64 {
        let i = words.iter().position(|x| x.trim_end_matches(';') == w).unwrap_or_else(|| panic!("{w} in {line}"));
        words[i - 1].parse().unwrap_or_else(|_| panic!("a number before {w} in {line}"))
    };
    (words[1].parse().unwrap(), words[5].parse().unwrap(), before("already"), before("refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_walks_an_archive_refuses_the_broken_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["site", "add", "Archive-A", "--ae", "ARCHA"], None);
    cli(dir.path(), &["site", "add", "Township-R", "--ae", "TOWNR"], None);
    cli(dir.path(), &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password-1\n"));

    // a DICOMDIR names its media's files: they come in, the DICOMDIR itself is no instance
    let media = data("pydicom/test_files/dicomdirtests/DICOMDIR");
    let (ok, out) = run(dir.path(), &["import", media.to_str().unwrap(), "--site", "Archive-A"]);
    assert!(ok, "{out}");
    let (new, _, _, refused) = summary(&out);
    assert!(new >= 20 && refused == 0, "the files the DICOMDIR lists: {out}");

    // the whole sample archive: every readable instance in, every broken file named with why
    let all = data("");
    let (ok, out) = run(dir.path(), &["import", all.to_str().unwrap(), "--site", "Archive-A", "--jobs", "4"]);
    assert!(ok, "{out}");
    let (new, versions, already, refused) = summary(&out);
    assert!(new > 90 && new + already > 120, "{out}");
    assert!(already >= 20, "the DICOMDIR's files were in already: {out}");
    for (file, why) in [
        ("MR_truncated.dcm", "truncated"),
        ("no_meta.dcm", "not a DICOM Part-10 file"),
        ("badVR.dcm", "Pixel Data holds"),
        ("README.md", "not a DICOM Part-10 file"),
        ("DICOMDIR-implicit", "a media directory (DICOMDIR)"),
    ] {
        let line = out.lines().find(|l| l.contains(&format!("/{file}:"))).unwrap_or_else(|| panic!("{file} not named as refused: {out}"));
        assert!(line.contains(why), "{file}: {line}");
    }
    assert_eq!(refused as usize, out.lines().filter(|l| l.starts_with("  ") && l.contains(": ")).count(), "every refusal named: {out}");

    // a re-run (an import stopped half-way and started again) skips what is in
    let (ok, again) = run(dir.path(), &["import", all.to_str().unwrap(), "--site", "Archive-A"]);
    assert!(ok, "{again}");
    let (new2, versions2, already2, refused2) = summary(&again);
    assert_eq!((new2, versions2), (0, 0), "nothing twice: {again}");
    assert_eq!(already2, new + versions + already, "{again}");
    assert_eq!(refused2, refused);

    // another site cannot take the archive's studies over
    let cr = data("pydicom-data/RG1_UNCR.dcm");
    let (ok, out) = run(dir.path(), &["import", cr.to_str().unwrap(), "--site", "Township-R"]);
    assert!(ok, "{out}");
    assert_eq!(summary(&out).3, 1, "the other site's UIDs are refused: {out}");
    // an unknown site is an error, not an import
    let (ok, out) = run(dir.path(), &["import", cr.to_str().unwrap(), "--site", "Nowhere"]);
    assert!(!ok && out.contains("no site named"), "{out}");

    // served: the archive is searchable, and it is history, not reading work
    let hub = serve(dir.path(), &[]).await;
    cli(dir.path(), &["user", "add", "admin", "--role", "admin", "--password-stdin"], Some("admin-password-1\n"));
    let (study, ..) = sop_of(&cr);
    let found: Value = basic_get(&hub, ("admin", "admin-password-1"), &format!("/dicom-web/studies?StudyInstanceUID={study}")).await.json().await.unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hub.queue(("rad1", "reader-password-1")).await.is_empty(), "an archive's studies are not queued for reading");
    // --for-reading queues them
    let sc = tempfile::tempdir().unwrap();
    std::fs::write(sc.path().join("one.dcm"), common::part10(SC, "1.2.826.0.1.3680043.8.498.16101.1", &synthetic_sc(None, b"Zhang^San", "IMP1", "1.2.826.0.1.3680043.8.498.16101", "1.2.826.0.1.3680043.8.498.16101.1"))).unwrap();
    let (ok, out) = run(dir.path(), &["import", sc.path().to_str().unwrap(), "--site", "Township-R", "--for-reading"]);
    assert!(ok && summary(&out).0 == 1, "{out}");
    hub.until_state(("rad1", "reader-password-1"), "1.2.826.0.1.3680043.8.498.16101", "ready", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_while_serving_and_restore_into_an_empty_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["site", "add", "Township-1", "--ae", "TOWNSHIP1"], None);
    cli(dir.path(), &["user", "add", "rad1", "--role", "reader", "--pool", "imaging", "--password-stdin"], Some("reader-password-1\n"));
    cli(dir.path(), &["user", "add", "admin", "--role", "admin", "--password-stdin"], Some("admin-password-1\n"));
    let hub = serve(dir.path(), &[]).await;
    let rad = ("rad1", "reader-password-1");
    // a study read and signed
    let study = "1.2.826.0.1.3680043.8.498.16201";
    assert_eq!(super::bounds::store_one(hub.dimse_port, study, &format!("{study}.1")).await, 0);
    hub.until_state(rad, study, "ready", Duration::from_secs(20)).await;
    let id = hub.queue(rad).await.iter().find(|i| i["study_instance_uid"] == study).unwrap()["id"].as_i64().unwrap();
    let client = reqwest::Client::new();
    let post = |path: String, body: Option<Value>| {
        let mut r = client.request(if body.is_some() { Method::PUT } else { Method::POST }, format!("http://{}{path}", hub.http)).basic_auth(rad.0, Some(rad.1));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    assert_eq!(post(format!("/api/worklist/{id}/claim"), None).await.unwrap().status(), 200);
    assert_eq!(post(format!("/api/worklist/{id}/report"), Some(json!({ "findings": "心影不大。", "impression": "未见异常。" }))).await.unwrap().status(), 200);
    assert_eq!(post(format!("/api/worklist/{id}/report/sign"), None).await.unwrap().status(), 200);

    // the backup runs while a modality keeps sending
    let port = hub.dimse_port;
    let sending = tokio::spawn(async move {
        let mut acked = Vec::new();
        for n in 0..40 {
            let s = format!("1.2.826.0.1.3680043.8.498.16202.{n}");
            if super::bounds::store_one(port, "1.2.826.0.1.3680043.8.498.16202", &s).await == 0 {
                acked.push(s);
            }
        }
        acked
    });
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("b1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, out) = run(dir.path(), &["backup", target.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("backed up") && out.contains("2 users"), "{out}");
    let acked = sending.await.unwrap();
    assert_eq!(acked.len(), 40, "ingest went on during the backup");
    // a backup is never written over another
    let (ok, out) = run(dir.path(), &["backup", target.to_str().unwrap()]);
    assert!(!ok && out.contains("not empty"), "{out}");

    // restored into an empty data directory, it serves what it held
    let fresh = tempfile::tempdir().unwrap();
    let (ok, out) = run(fresh.path(), &["restore", target.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = run(fresh.path(), &["restore", target.to_str().unwrap()]);
    assert!(!ok && out.contains("already holds an install"), "a second restore over it is refused: {out}");
    let (ok, out) = run(fresh.path(), &["restore", dir.path().join("nothing").to_str().unwrap()]);
    assert!(!ok && out.contains("not a readhub backup"), "{out}");
    let restored = serve(fresh.path(), &[]).await;
    // users (with their passwords), the signed report, the study and its pixels
    let report: Value = basic_get(&restored, rad, &format!("/api/worklist/{id}/report")).await.json().await.unwrap();
    assert!(report["status"] == "final" && report["impression"] == "未见异常。", "{report}");
    assert_eq!(basic_get(&restored, ("admin", "admin-password-1"), "/api/admin/users").await.status(), 200);
    let studies: Value = basic_get(&restored, rad, "/dicom-web/studies").await.json().await.unwrap();
    let uids: Vec<String> = studies.as_array().unwrap().iter().map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_string()).collect();
    assert!(uids.contains(&study.to_string()), "{uids:?}");
    // every instance the backup holds is whole: byte-identical to the one the hub serves
    // (instances acknowledged during the backup are in it or not, never half)
    let mut checked = 0;
    for uid in &uids {
        let instances: Value = basic_get(&restored, rad, &format!("/dicom-web/studies/{uid}/instances")).await.json().await.unwrap();
        for inst in instances.as_array().unwrap() {
            let sop = inst["00080018"]["Value"][0].as_str().unwrap();
            let series = inst["0020000E"]["Value"][0].as_str().unwrap();
            let path = format!("/dicom-web/studies/{uid}/series/{series}/instances/{sop}");
            let fetch = |node: &Served| {
                reqwest::Client::new()
                    .get(format!("http://{}{path}", node.http))
                    .basic_auth(rad.0, Some(rad.1))
                    .header("accept", "application/dicom; transfer-syntax=*")
                    .send()
            };
            let copy = fetch(&restored).await.unwrap();
            assert_eq!(copy.status(), 200, "{path}");
            let original = fetch(&hub).await.unwrap().bytes().await.unwrap();
            assert_eq!(copy.bytes().await.unwrap(), original, "{path}: the restored instance is the stored one");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the read study and some of those sent during the backup: {checked}");
}
