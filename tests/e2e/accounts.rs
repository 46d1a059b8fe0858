//! Account lifecycle (issue 12, item 7): an admin resets a password, renames a site and
//! removes an AE title (API and command line); a user changes their own password (the
//! current one required, a minimum length, no common password); all of it audited.

use super::*;

async fn login(hub: &Hub, user: &str, password: &str) -> (u16, Option<String>) {
    let r = hub.http().post(format!("{}/api/login", hub.base)).json(&json!({"username": user, "password": password})).send().await.unwrap();
    let status = r.status().as_u16();
    let token = r.json::<Value>().await.ok().and_then(|v| v["token"].as_str().map(str::to_string));
    (status, token)
}

async fn me(hub: &Hub, token: &str) -> u16 {
    hub.http().get(format!("{}/api/me", hub.base)).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn account_lifecycle(backend: Backend) {
    let hub = Hub::start(backend).await;
    hub.site("Township-A", &["MODA", "MODA2"], None).await;
    hub.site("Township-B", &["MODB"], None).await;
    let admin = hub.user("admin", Role::Admin, None).await;
    let rad = hub.user("rad1", Role::Reader, Some("imaging")).await;
    let doc = hub.user("doc-a", Role::Referrer, Some("Township-A")).await;
    let study = "1.2.826.0.1.3680043.10.9.901";
    ready_item(&hub, "MODA", &rad, "P-ACC-1", study).await;

    // ---- an admin resets a password: old credentials and sessions end at once
    let (_, rad_session) = login(&hub, "rad1", &rad.1).await;
    let rad_session = rad_session.unwrap();
    assert_eq!(hub.get(&rad, "/api/worklist").await.status(), 200, "Basic credentials cached");
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/users/rad1/password", Some(json!({"password": "12345678"}))).await;
    assert_eq!(code, 422, "a common password: {v}");
    assert!(v.to_string().contains("常见"), "{v}");
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/users/rad1/password", Some(json!({"password": "short"}))).await;
    assert_eq!(code, 422, "too short: {v}");
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/users/rad1/password", Some(json!({"password": "reset by the admin 1"}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(hub.get(&rad, "/api/worklist").await.status(), 401, "the old password (even cached) is refused");
    assert_eq!(me(&hub, &rad_session).await, 401, "the old session ended");
    let rad = ("rad1".to_string(), "reset by the admin 1".to_string());
    assert_eq!(hub.get(&rad, "/api/worklist").await.status(), 200);
    let (code, _) = hub.send(&doc, Method::PUT, "/api/admin/users/rad1/password", Some(json!({"password": "a doctor's choice 1"}))).await;
    assert_eq!(code, 403, "only admins reset passwords");

    // ---- a user changes their own password
    let (_, here) = login(&hub, "doc-a", &doc.1).await;
    let (_, elsewhere) = login(&hub, "doc-a", &doc.1).await;
    let (here, elsewhere) = (here.unwrap(), elsewhere.unwrap());
    let change = |old: &str, new: &str| {
        hub.http()
            .post(format!("{}/api/me/password", hub.base))
            .bearer_auth(&here)
            .json(&json!({"old_password": old, "new_password": new}))
            .send()
    };
    let r = change("not-my-password", "a fresh passphrase 9").await.unwrap();
    assert_eq!(r.status(), 422, "the current password is required");
    assert!(r.text().await.unwrap().contains("当前密码错误"));
    assert_eq!(change(&doc.1, "woaini1314").await.unwrap().status(), 422, "common");
    assert_eq!(change(&doc.1, "1234567").await.unwrap().status(), 422, "too short");
    assert_eq!(change(&doc.1, "doc-a2024").await.unwrap().status(), 422, "the user name");
    let r = change(&doc.1, "a fresh passphrase 9").await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(me(&hub, &here).await, 200, "the session it was changed from stays");
    assert_eq!(me(&hub, &elsewhere).await, 401, "the other sessions end");
    assert_eq!(login(&hub, "doc-a", &doc.1).await.0, 422, "the old password no longer logs in");
    assert_eq!(login(&hub, "doc-a", "a fresh passphrase 9").await.0, 200);
    let doc = ("doc-a".to_string(), "a fresh passphrase 9".to_string());

    // ---- rename a site: its studies and its patients' issuer stay
    let issuer_before = storage::sites::site_by_name(&hub.storage.db, "Township-A").await.unwrap().unwrap().issuer;
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-A/name", Some(json!({"name": "Township-B"}))).await;
    assert_eq!(code, 400, "the name is taken: {v}");
    let (code, v) = hub.send(&admin, Method::PUT, "/api/admin/sites/Township-A/name", Some(json!({"name": "乡镇卫生院甲"}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["name"], "乡镇卫生院甲");
    assert_eq!(v["issuer"], issuer_before.as_str(), "the issuer of the site's patients stays");
    let reports = hub.get_json(&rad, "/api/worklist").await;
    assert!(reports.as_array().unwrap().iter().any(|i| i["study_instance_uid"] == study && i["site_name"] == "乡镇卫生院甲"), "{reports}");
    assert_eq!(hub.get(&doc, &format!("/dicom-web/studies?StudyInstanceUID={study}")).await.status(), 200);

    // ---- remove an AE title: its next association is refused, the site's other title works
    let (ok, out) = super::echo(hub.dimse_port, "MODA2").await;
    assert!(ok, "{out}");
    let site = "%E4%B9%A1%E9%95%87%E5%8D%AB%E7%94%9F%E9%99%A2%E7%94%B2";
    let (code, v) = hub.send(&admin, Method::DELETE, &format!("/api/admin/sites/{site}/ae-titles/MODA2"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ae_titles"], json!(["MODA"]));
    let (ok, out) = super::echo(hub.dimse_port, "MODA2").await;
    assert!(!ok && out.contains("Calling AE Title Not Recognized"), "{out}");
    assert!(super::echo(hub.dimse_port, "MODA").await.0);
    let (code, _) = hub.send(&admin, Method::DELETE, &format!("/api/admin/sites/{site}/ae-titles/MODA2"), None).await;
    assert_eq!(code, 404);

    // ---- the same from the command line
    let url = hub.config.database_url.as_deref();
    let cli = |args: &[&str], stdin: Option<&str>| super::readhub_cli(hub.data_dir(), url, args, stdin);
    let (ok, out) = cli(&["user", "password", "rad1", "--password-stdin"], Some("set on the console 7\n"));
    assert!(ok, "{out}");
    assert_eq!(hub.get(&("rad1".into(), "set on the console 7".into()), "/api/worklist").await.status(), 200);
    let (ok, out) = cli(&["user", "password", "rad1", "--password-stdin"], Some("password\n"));
    assert!(!ok && out.contains("常见"), "{out}");
    let (ok, out) = cli(&["site", "rename", "Township-B", "Township-B2"], None);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["site", "remove-ae", "Township-B2", "MODB"], None);
    assert!(ok, "{out}");
    assert!(!super::echo(hub.dimse_port, "MODB").await.0);
    let (ok, out) = cli(&["site", "remove-ae", "Township-B2", "MODB"], None);
    assert!(!ok && out.contains("no AE title"), "{out}");

    // ---- all of it is in the audit trail
    let rows = hub.get_json(&admin, "/api/admin/audit?limit=1000").await["entries"].as_array().unwrap().clone();
    let has = |action: &str, who: &str, detail: &str| {
        rows.iter().any(|r| r["action"] == action && r["username"].as_str().unwrap_or("").starts_with(who) && r["detail"].as_str().unwrap().contains(detail))
    };
    assert!(has("user_change", "admin", "/api/admin/users/rad1/password"));
    assert!(has("user_change", "doc-a", "/api/me/password"));
    assert!(has("site_change", "admin", "/name"));
    assert!(has("site_change", "admin", "/ae-titles/MODA2"));
    assert!(has("user_change", "cli:", "user password rad1"));
    assert!(has("site_change", "cli:", "site remove-ae Township-B2 MODB"));
    assert!(!rows.iter().any(|r| r["detail"].as_str().unwrap().contains("set on the console")), "no password in the trail");
    hub.stop().await;
}

on_both!(account_lifecycle);
