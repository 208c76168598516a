//! Reconciliation end to end: users pushed through SCIM and delivered to the sandbox, then
//! changed by hand in the vendors' consoles; a reconcile reports exactly that, and with
//! `apply` heals what each target's policy says and nothing made by hand.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use scim_bridge::reconcile::policy::{OnDrift, OnOrphan};
use scim_bridge::targets::{appgate, kibo, primavera, vikingcloud};

use crate::support::{json_of, user, SyncedApp};

/// The target's id for the user's account, from the ledger.
async fn remote_id(app: &SyncedApp, user_id: &str, target: &str) -> String {
    let status = app
        .admin_ok(Method::GET, &format!("/users/{user_id}"))
        .await;
    let row = status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["desired"]["target"] == target)
        .unwrap()
        .clone();
    row["remote_id"].as_str().unwrap().to_owned()
}

/// Starts a run through the admin API and waits (bounded) for it to end.
async fn reconcile(app: &SyncedApp, body: Value) -> Value {
    let response = app
        .admin(Method::POST, "/reconcile")
        .json(&body)
        .send()
        .await
        .unwrap();
    let started = json_of(response, 202).await;
    let id = started["run"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = app
            .admin_ok(Method::GET, &format!("/reconcile/runs/{id}"))
            .await;
        if run["status"] != "running" {
            assert_eq!(run["status"], "finished", "{run}");
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "run {id} never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A run's findings as (kind, target, user, decision), sorted.
async fn findings(app: &SyncedApp, run: &Value) -> Vec<(String, String, String, String)> {
    let id = run["id"].as_i64().unwrap();
    let response = app
        .admin(
            Method::GET,
            &format!("/reconcile/runs/{id}/findings?limit=1000"),
        )
        .send()
        .await
        .unwrap();
    let body = json_of(response, 200).await;
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut found: Vec<_> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                text(&f["kind"]),
                text(&f["target"]),
                text(&f["user_id"]),
                text(&f["decision"]),
            )
        })
        .collect();
    found.sort();
    found
}

fn finding(
    kind: &str,
    target: &str,
    user: &str,
    decision: &str,
) -> (String, String, String, String) {
    (kind.into(), target.into(), user.into(), decision.into())
}

#[tokio::test]
async fn hand_changes_are_reported_exactly_and_healed_by_policy_and_hand_made_accounts_left_alone()
{
    let app = SyncedApp::spawn_with(|settings| {
        settings.targets.get_mut("kibo").unwrap().reconcile.on_drift = OnDrift::Repair;
        settings
            .targets
            .get_mut("primavera")
            .unwrap()
            .reconcile
            .on_orphan = OnOrphan::Delete;
    })
    .await;
    let mut ids = Vec::new();
    for name in ["ada", "bob", "cy"] {
        let created = app.app.create_user(&user(name)).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    app.settle(3).await;
    let (ada, bob) = (ids[0].clone(), ids[1].clone());

    let gone = remote_id(&app, &ada, "appgate").await;
    app.by_hand(&appgate::VENDOR, Method::DELETE, &format!("/{gone}"), None)
        .await;
    let edited = remote_id(&app, &bob, "kibo").await;
    let edit = json!({"firstName": "Edited"});
    app.by_hand(
        &kibo::VENDOR,
        Method::PATCH,
        &format!("/{edited}"),
        Some(edit),
    )
    .await;
    let marked = json!({"email": "left@example.com", "firstName": "Left", "lastName": "Over",
        "ldapGuid": "idp-left-over"});
    app.by_hand(&primavera::VENDOR, Method::POST, "", Some(marked))
        .await;
    let hand_made = json!({"email": "hand@example.com", "firstName": "Hand", "lastName": "Made"});
    app.by_hand(&primavera::VENDOR, Method::POST, "", Some(hand_made))
        .await;

    let report = reconcile(&app, json!({})).await;
    assert_eq!(
        findings(&app, &report).await,
        [
            finding("drifted", "kibo", &bob, "repair"),
            finding("missing", "appgate", &ada, "recreate"),
            finding("orphan_marked", "primavera", "-", "delete"),
            finding("orphan_unmarked", "primavera", "-", "untouched"),
        ],
        "{report}"
    );
    let drift = app
        .admin(
            Method::GET,
            &format!("/reconcile/runs/{}/findings?kind=drifted", report["id"]),
        )
        .send()
        .await
        .unwrap();
    let drift = json_of(drift, 200).await;
    assert_eq!(
        drift["findings"][0]["fields"],
        json!([{"field": "firstName", "desired": "Given", "delivered": "Given", "actual": "Edited"}])
    );
    assert!(
        app.sandbox
            .emulator(&appgate::VENDOR)
            .unwrap()
            .account(&gone)
            .is_none(),
        "a report changes nothing"
    );

    let applied = reconcile(&app, json!({"apply": true})).await;
    // Carrying the policies out is an operator action, in the audit trail with who asked.
    let audit = audit_of(&app, "reconcile_apply").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor"], "admin:development");
    assert_eq!(audit[0]["detail"]["run"], applied["id"]);
    app.settle(3).await;
    let appgate_names: Vec<Value> = app
        .live_accounts(&appgate::VENDOR)
        .iter()
        .map(|a| a.fields["name"].clone())
        .collect();
    assert!(
        appgate_names.contains(&json!("ada")),
        "re-created: {appgate_names:?}"
    );
    let bob_on_kibo = app
        .sandbox
        .emulator(&kibo::VENDOR)
        .unwrap()
        .account(&edited)
        .unwrap();
    assert_eq!(
        bob_on_kibo.fields["firstName"],
        json!("Given"),
        "the edit is undone"
    );
    let primavera_mails: Vec<Value> = app
        .live_accounts(&primavera::VENDOR)
        .iter()
        .map(|a| a.fields["email"].clone())
        .collect();
    assert!(
        primavera_mails.contains(&json!("hand@example.com")),
        "never touched"
    );
    assert!(
        !primavera_mails.contains(&json!("left@example.com")),
        "the marked orphan went"
    );

    let again = reconcile(&app, json!({})).await;
    assert_eq!(
        findings(&app, &again).await,
        [finding("orphan_unmarked", "primavera", "-", "untouched")],
        "only the account made by hand, which is reported and left alone every time"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "scim_bridge_reconcile_findings{target=\"primavera\",kind=\"orphan_unmarked\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_patch_of_a_user_whose_account_was_deleted_by_hand_creates_it_again() {
    let app = SyncedApp::spawn().await;
    let created = app.app.create_user(&user("dee")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.settle(1).await;
    let gone = remote_id(&app, &id, "kibo").await;
    app.by_hand(&kibo::VENDOR, Method::DELETE, &format!("/{gone}"), None)
        .await;

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Dee"}]});
    let response = app.app.patch(&format!("/Users/{id}"), &patch).await;
    assert_eq!(response.status(), 200);
    let kibo = app
        .until_target("kibo", |t| t["pending"] == 0 && t["retrying"] == 0)
        .await;
    assert_eq!(kibo["rejected"], 0, "{kibo}");
    let again = remote_id(&app, &id, "kibo").await;
    assert_ne!(again, gone);
    let account = app
        .sandbox
        .emulator(&kibo::VENDOR)
        .unwrap()
        .account(&again)
        .unwrap();
    assert_eq!(account.fields["firstName"], json!("Dee"));
}

#[tokio::test]
async fn unknown_targets_runs_and_kinds_are_refused_clearly() {
    let app = SyncedApp::spawn().await;
    let cases = [
        (
            Method::POST,
            "/reconcile",
            Some(json!({"target": "kiboo"})),
            404,
            "no target named kiboo; configured: appgate, kibo, primavera, vikingcloud",
        ),
        (
            Method::GET,
            "/reconcile/runs/999",
            None,
            404,
            "no reconcile run 999",
        ),
        (
            Method::GET,
            "/reconcile/runs/abc/findings",
            None,
            404,
            "no reconcile run abc",
        ),
        (
            Method::GET,
            "/reconcile/runs/999/findings",
            None,
            404,
            "no reconcile run 999",
        ),
        (
            Method::POST,
            "/reconcile",
            Some(json!({"targte": "kibo"})),
            400,
            "targte",
        ),
    ];
    for (method, path, body, status, words) in cases {
        let mut request = app.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains(words), "{path}: {text}");
    }
    let run = reconcile(&app, json!({})).await;
    let response = app
        .admin(
            Method::GET,
            &format!("/reconcile/runs/{}/findings?kind=lost", run["id"]),
        )
        .send()
        .await
        .unwrap();
    let body = json_of(response, 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown finding kind lost"),
        "{body}"
    );
}

#[test]
fn the_command_line_names_an_unknown_target() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bridge.db");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["reconcile", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no database at"), "{stderr}");

    scim_bridge::ledger::Db::open(&scim_bridge::ledger::DbOptions {
        path: db.clone(),
        readers: 1,
    })
    .unwrap();
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["reconcile", "--target", "kiboo", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no target named kiboo; configured: appgate, kibo, primavera, vikingcloud"),
        "{stderr}"
    );
}

/// `scim-bridge sync USER --dry-run` for a user whose Kibo account was edited by hand, against
/// tests/golden/sync/dry_run.txt. Ids and times differ per run and are replaced by names.
/// After an intended change: `UPDATE_GOLDEN=1 cargo test --test it reconcile::sync`.
#[tokio::test]
async fn sync_dry_run_shows_every_step_per_target() {
    let app = SyncedApp::spawn().await;
    let created = app.app.create_user(&user("gus")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.settle(1).await;
    let mut names = vec![(id.clone(), "<user id>".to_owned())];
    for target in ["appgate", "kibo", "primavera", "vikingcloud"] {
        names.push((remote_id(&app, &id, target).await, format!("<{target} id>")));
    }
    let kibo_id = names[2].0.clone();
    let edit = json!({"firstName": "Edited"});
    app.by_hand(
        &kibo::VENDOR,
        Method::PATCH,
        &format!("/{kibo_id}"),
        Some(edit),
    )
    .await;

    // The embedded configuration, its targets pointed at this test's emulators.
    let mut config = scim_bridge::config::EMBEDDED_DEFAULT.to_owned();
    for (port, vendor) in [
        (18441, &appgate::VENDOR),
        (18442, &scim_bridge::targets::vikingcloud::VENDOR),
        (18443, &kibo::VENDOR),
        (18444, &primavera::VENDOR),
    ] {
        let origin = app.sandbox.emulator(vendor).unwrap().origin();
        config = config.replace(&format!("http://127.0.0.1:{port}"), &origin);
    }
    let config_file = app.app.dir.path().join("bridge.toml");
    std::fs::write(&config_file, config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sync", "gus", "--dry-run", "--config"])
        .arg(&config_file)
        .arg("--db")
        .arg(app.app.dir.path().join("bridge.db"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut shown = String::from_utf8(output.stdout).unwrap();
    for (value, name) in &names {
        shown = shown.replace(value, name);
    }
    let times = regex::Regex::new(r"\d{4}-\d\d-\d\dT[0-9:.]+Z").unwrap();
    let shown = times.replace_all(&shown, "<time>").into_owned();
    let versions = regex::Regex::new(r#"W/\\"[^\\]*\\""#).unwrap();
    let shown = versions.replace_all(&shown, "<version>").into_owned();
    // The mapping files change on their own; their golden payloads are tested elsewhere.
    let mappings = regex::Regex::new(r"mapping [0-9a-f]{64}").unwrap();
    let shown = mappings.replace_all(&shown, "mapping <hash>").into_owned();

    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sync/dry_run.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &shown).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        shown,
        want,
        "the output differs from {}; if intended, run UPDATE_GOLDEN=1 cargo test --test it \
         reconcile::sync and review the diff",
        golden.display()
    );
    assert!(
        app.sandbox
            .emulator(&kibo::VENDOR)
            .unwrap()
            .account(&kibo_id)
            .unwrap()
            .fields["firstName"]
            == json!("Edited"),
        "a dry run sends nothing"
    );
}

#[tokio::test]
async fn a_sync_through_the_admin_api_sends_the_user_and_shows_the_answer() {
    let app = SyncedApp::spawn().await;
    let created = app.app.create_user(&user("hal")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.settle(1).await;
    let kibo_id = remote_id(&app, &id, "kibo").await;
    let edit = json!({"firstName": "Edited"});
    app.by_hand(
        &kibo::VENDOR,
        Method::PATCH,
        &format!("/{kibo_id}"),
        Some(edit),
    )
    .await;

    let report = app
        .admin_ok(Method::POST, &format!("/users/{id}/sync?target=kibo"))
        .await;
    let kibo = &report["targets"][0];
    assert_eq!(kibo["finding"]["kind"], "drifted", "{report}");
    assert_eq!(kibo["request"], json!(format!("update {kibo_id}")));
    assert_eq!(kibo["answer"], "delivered", "{report}");
    assert_eq!(report["targets"].as_array().unwrap().len(), 1, "only kibo");
    let account = app
        .sandbox
        .emulator(&kibo::VENDOR)
        .unwrap()
        .account(&kibo_id)
        .unwrap();
    assert_eq!(account.fields["firstName"], json!("Given"));

    let audit = audit_of(&app, "sync").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            &audit[0]["actor"],
            &audit[0]["user_id"],
            &audit[0]["target"]
        ),
        (&json!("admin:development"), &json!(id), &json!("kibo"))
    );
}

/// The audit trail's entries for one action, newest first.
async fn audit_of(app: &SyncedApp, action: &str) -> Vec<Value> {
    app.admin_ok(Method::GET, &format!("/audit?action={action}"))
        .await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// The reconcile bench: N users (RECONCILE_BENCH_USERS, 5,000 by default) pushed through SCIM
/// to one target alone with its quotas lifted (RECONCILE_BENCH_TARGET: `kibo`, the default,
/// lists its accounts; `vikingcloud` cannot, so each is read by id), then `scim-bridge
/// reconcile --target` timed under `/usr/bin/time -v` for its wall time and peak RSS. On a
/// quiet machine:
/// `RECONCILE_BENCH_USERS=100000 cargo test --release --test it reconcile::bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run it on purpose, on a quiet machine"]
async fn bench_reconcile_of_many_users_on_one_target() {
    use futures_util::StreamExt;

    let users: u64 = std::env::var("RECONCILE_BENCH_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    // Kibo lists its accounts; VikingCloud cannot, so its accounts are read one by one.
    let target = std::env::var("RECONCILE_BENCH_TARGET").unwrap_or_else(|_| "kibo".into());
    let (vendor, default_origin) = match target.as_str() {
        "kibo" => (&kibo::VENDOR, "http://127.0.0.1:18443"),
        "vikingcloud" => (&vikingcloud::VENDOR, "http://127.0.0.1:18442"),
        other => panic!("RECONCILE_BENCH_TARGET is kibo or vikingcloud, not {other}"),
    };
    let app = SyncedApp::spawn_with(|settings| {
        // The seeding is one client at full speed: past the default 1,000 requests a
        // second it was answered 429.
        settings.scim.requests_per_second = 1_000_000;
        let measured = settings.targets.get_mut(&target).unwrap();
        measured.rate_limit_per_second = 100_000;
        measured.concurrency = 64;
        measured.max_concurrency = 64;
    })
    .await;
    // One target measured: the others take nothing.
    let others = ["appgate", "kibo", "primavera", "vikingcloud"]
        .into_iter()
        .filter(|name| *name != target);
    for other in others {
        let path = format!("/targets/{other}/pause");
        let response = app.admin(Method::POST, &path).send().await.unwrap();
        json_of(response, 200).await;
    }
    let started = std::time::Instant::now();
    futures_util::stream::iter(0..users)
        .map(|n| {
            let app = &app;
            async move { app.app.create_user(&user(&format!("bench{n:07}"))).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let lag = app.lag().await;
        let measured = lag.iter().find(|t| t["target"] == target.as_str()).unwrap();
        if measured["delivered"].as_u64() == Some(users) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "seeded {users} users in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let origin = app.sandbox.emulator(vendor).unwrap().origin();
    let config = scim_bridge::config::EMBEDDED_DEFAULT
        .replace(default_origin, &origin)
        .replace(
            "rate_limit_per_second = 20",
            "rate_limit_per_second = 100000",
        );
    let config_file = app.app.dir.path().join("bridge.toml");
    std::fs::write(&config_file, config).unwrap();
    let output = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["reconcile", "--target", &target, "--config"])
        .arg(&config_file)
        .arg("--db")
        .arg(app.app.dir.path().join("bridge.db"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let measured = |label: &str| {
        stderr
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| line.rsplit(": ").next())
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "reconcile of {users} users on {target}: wall {}, peak RSS {} KiB\n{}",
        measured("Elapsed (wall clock) time"),
        measured("Maximum resident set size"),
        stdout.lines().take(4).collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains("(no findings"), "{stdout}");
}
