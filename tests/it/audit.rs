//! The operator audit trail: every action, from a named admin client, the `ledger` CLI and
//! SIGHUP, is recorded with who did it, and read back through the admin API and the CLI.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

use scim_bridge::config::ClientSettings;

use crate::support::{json_of, mappings_dir, SyncedApp};

const ALICE: &str = "alice-admin-token";

fn ledger(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .arg("ledger")
        .args(args)
        .arg("--db")
        .arg(db)
        .env("USER", "bob")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn every_operator_action_is_audited_with_who_did_it() {
    // A copy of the shipped mappings, to break one later.
    let mappings = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(mappings_dir()).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            std::fs::copy(&path, mappings.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let copied = mappings.path().to_owned();
    let synced = SyncedApp::spawn_with(move |settings| {
        settings.fanout.mappings_dir = copied;
        settings.admin.dev_token = None;
        settings.admin.clients = vec![ClientSettings {
            name: "alice".into(),
            token_sha256: Some(hex::encode(sha2::Sha256::digest(ALICE))),
            token_env: None,
            token_file: None,
            requests_per_second: None,
        }];
    })
    .await;
    let admin = |method: Method, path: &str| {
        synced
            .app
            .client
            .request(method, format!("{}/admin{path}", synced.app.base))
            .bearer_auth(ALICE)
    };
    for path in [
        "/targets/kibo/pause",
        "/targets/kibo/resume",
        "/targets/kibo/release",
        "/targets/kibo/discard",
        "/mappings/reload",
    ] {
        let response = admin(Method::POST, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = admin(Method::POST, "/replay")
        .json(&json!({"target": "appgate", "dead_only": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response, 200).await["replayed"], 0);
    let db = synced.app.dir.path().join("bridge.db");
    ledger(&db, &["pause", "primavera"]);

    let response = admin(Method::GET, "/audit").send().await.unwrap();
    let entries = json_of(response, 200).await["entries"]
        .as_array()
        .unwrap()
        .clone();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("cli:bob", "pause", "primavera"),
            ("admin:alice", "replay", "appgate"),
            ("admin:alice", "mapping_reload", "-"),
            ("admin:alice", "discard", "kibo"),
            ("admin:alice", "release", "kibo"),
            ("admin:alice", "resume", "kibo"),
            ("admin:alice", "pause", "kibo"),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e["outcome"] == "ok" && e["at"].is_i64()));
    assert_eq!(
        entries[1]["detail"],
        json!({"replayed": 0, "dead_only": true})
    );
    let reload = &entries[2]["detail"];
    assert_eq!(reload["old"], reload["new"], "{reload}");
    assert!(reload["new"]["kibo"].is_string(), "{reload}");

    // Filtered by action, and paged by sequence number.
    let response = admin(Method::GET, "/audit?action=pause&limit=1")
        .send()
        .await
        .unwrap();
    let page = json_of(response, 200).await;
    assert_eq!(page["entries"][0]["actor"], "cli:bob");
    let before = page["next_before"].as_i64().unwrap();
    let response = admin(Method::GET, &format!("/audit?action=pause&before={before}"))
        .send()
        .await
        .unwrap();
    let rest = json_of(response, 200).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["entries"][0]["actor"], "admin:alice");
    assert_eq!(rest["next_before"], Value::Null);
    let response = admin(Method::GET, "/audit?action=delete")
        .send()
        .await
        .unwrap();
    let refused = json_of(response, 400).await;
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("mapping_reload"));
    for bad in ["/audit?limit=0", "/audit?before=yesterday", "/audit?user=x"] {
        let response = admin(Method::GET, bad).send().await.unwrap();
        assert_eq!(
            json_of(response, 400).await["error"],
            "bad_request",
            "{bad}"
        );
    }

    // The same trail from the command line.
    let output = ledger(&db, &["audit", "--action", "pause", "--json"]);
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let text = ledger(&db, &["audit", "--target", "kibo"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains("admin:alice"));

    // A mapping reload that is refused is audited as refused, with the errors.
    std::fs::write(mappings.path().join("kibo.toml"), "not [valid").unwrap();
    let response = admin(Method::POST, "/mappings/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response, 400).await["reloaded"], false);
    let response = admin(Method::GET, "/audit?action=mapping_reload&limit=1")
        .send()
        .await
        .unwrap();
    let newest = &json_of(response, 200).await["entries"][0];
    assert_eq!(
        (&newest["actor"], &newest["outcome"]),
        (&json!("admin:alice"), &json!("refused"))
    );
    assert!(
        newest["detail"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("kibo.toml"),
        "{newest}"
    );
    assert!(newest["detail"]["old"]["kibo"].is_string());
}

/// A free port on loopback, for a bridge started as its own process.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_reload_on_sighup_is_audited_as_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    let db = dir.path().join("bridge.db");
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = {db:?}\n[fanout]\nkey_file = {:?}\nmappings_dir = {mappings:?}\n\
             [sandbox]\nstart = false\n",
            dir.path().join("secret.key")
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the bridge did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let entry = loop {
        let output = ledger(&db, &["audit", "--json"]);
        let entries: Value = serde_json::from_slice(&output.stdout).unwrap();
        if let Some(entry) = entries.as_array().unwrap().first() {
            break entry.clone();
        }
        assert!(Instant::now() < deadline, "no audit entry for the SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(entry["actor"], "signal");
    assert_eq!(entry["action"], "mapping_reload");
    assert_eq!(entry["outcome"], "ok");
}
