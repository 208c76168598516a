//! The database as an operator meets it: a file the bridge cannot write stops the start with
//! the reason, a full database answers 503 and takes the bridge out of rotation until writes
//! go through again, and the files holding personal data are private to the bridge's user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use scim_bridge::ledger::{Db, DbOptions};

use crate::support::{assert_scim_error, user, TestApp};

/// Runs `scim-bridge serve` on `db` (as `uid` when given) and returns its exit status and
/// standard error, or `None` when it was still running after ten seconds (it started).
async fn serve_once(db: &Path, uid: Option<u32>) -> Option<(bool, String)> {
    let bridge = env!("CARGO_BIN_EXE_scim-bridge");
    let mut command = match uid {
        Some(uid) => {
            // A copy beside the database: the checkout (and the binary in it) may sit below a
            // directory that user cannot enter.
            let copy = db.with_file_name("scim-bridge");
            std::fs::copy(bridge, &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut command = tokio::process::Command::new("setpriv");
            command
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                ])
                .arg(&copy);
            command
        }
        None => tokio::process::Command::new(bridge),
    };
    let child = command
        .args(["serve", "--no-sandbox", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await;
    let output = output.ok()?.unwrap();
    Some((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A database file made by `Db::open` and closed again, in a directory of its own.
async fn existing_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.db");
    let db = Db::open(&DbOptions {
        path: path.clone(),
        readers: 1,
    })
    .unwrap();
    db.checkpoint().await.unwrap();
    drop(db);
    (dir, path)
}

#[tokio::test]
async fn a_database_file_the_bridge_may_not_write_stops_the_start() {
    let (dir, path) = existing_database().await;
    // Root writes any file whatever its mode, so as root the bridge runs as `nobody`, with
    // the directory open to it (SQLite may create its -wal and -shm there) and the database
    // file readable but not writable: the case where SQLite silently opens it read-only.
    let running_as_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let uid = running_as_root.then_some(65534);

    let outcome = serve_once(&path, uid).await;

    let (succeeded, stderr) = outcome.expect("the bridge started on a file it cannot write");
    assert!(!succeeded);
    assert!(stderr.contains("is not writable"), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[tokio::test]
async fn a_database_locked_by_another_process_stops_the_start() {
    let (_dir, path) = existing_database().await;
    // This test process holds the lock; the bridge is the other process.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();

    let outcome = serve_once(&path, None).await;

    let (succeeded, stderr) = outcome.expect("the bridge started on a locked file");
    assert!(!succeeded);
    assert!(stderr.contains("locked by another process"), "{stderr}");
    drop(holder);
}

#[tokio::test]
async fn a_full_database_answers_503_and_is_not_ready_until_a_write_goes_through() {
    let app = TestApp::spawn_with(|settings| settings.database.max_size_mb = Some(1)).await;
    let ready = app.client.get(format!("{}/readyz", app.base));
    assert_eq!(ready.send().await.unwrap().status(), 200);

    // Fill it: concurrent creates until the first refusal.
    let mut created = Vec::new();
    let mut refused = None;
    for round in 0..100 {
        let answers: Vec<_> = stream::iter(0..20)
            .map(|n| {
                let body = user(&format!("filler-{round}-{n}-{}", "x".repeat(200)));
                let app = &app;
                async move { app.post("/Users", &body).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for answer in answers {
            match answer.status().as_u16() {
                201 => created.push(answer.json::<serde_json::Value>().await.unwrap()),
                503 => refused = Some(answer),
                other => panic!(
                    "unexpected status {other}: {}",
                    answer.text().await.unwrap()
                ),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    assert!(refused.is_some(), "a 1 MiB database never filled up");
    // Users accepted before the refusal may still be planned, and planning drops their marks,
    // freeing pages a later create may take (which rightly makes the bridge ready again).
    // With planning done, fill what is left one create at a time, so that nothing commits
    // after the refusal the readiness checks below follow.
    let mut last = 0;
    let refused = loop {
        app.planned().await;
        last += 1;
        assert!(last < 1_000, "the database kept taking creates");
        let answer = app
            .post(
                "/Users",
                &user(&format!("filler-last-{last}-{}", "x".repeat(200))),
            )
            .await;
        match answer.status().as_u16() {
            201 => created.push(answer.json::<serde_json::Value>().await.unwrap()),
            503 => break answer,
            other => panic!(
                "unexpected status {other}: {}",
                answer.text().await.unwrap()
            ),
        }
    };
    assert_eq!(refused.headers()["retry-after"], "30");
    let body = assert_scim_error(refused, 503, None).await;
    assert!(body["detail"].as_str().unwrap().contains("retry"), "{body}");

    let not_ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.headers().contains_key("retry-after"));
    // Asked again with nothing freed, the probe write still fails.
    let still = app.client.get(format!("{}/readyz", app.base)).send().await;
    assert_eq!(still.unwrap().status(), 503);

    // The operator frees space (here: deletes every user created). All of them, because
    // users accepted while the disk was full are still to be planned, and planning the
    // ones left would take the space a few deletions free.
    for user in &created {
        let id = user["id"].as_str().unwrap();
        assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    }
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await;
    assert_eq!(ready.unwrap().status(), 200);
    assert_eq!(app.post("/Users", &user("after-space")).await.status(), 201);
}

#[tokio::test]
async fn database_wal_and_shm_files_are_private_to_the_bridge_user() {
    let app = TestApp::spawn().await;
    app.create_user(&user("private")).await;
    let db = app.dir.path().join("bridge.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}
