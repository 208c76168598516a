//! Crash safety: the bridge binary is killed with SIGKILL in the middle of a load and
//! restarted; every target ends with exactly one account per user, holding the latest state.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use scim_bridge::clock::SystemClock;
use scim_bridge::sandbox::faults::Faults;
use scim_bridge::sandbox::{self, Sandbox, SandboxConfig};
use scim_bridge::targets;

use crate::support::{mappings_dir, user, ADMIN_TOKEN, TOKEN};

const USERS: usize = 2000;

struct Bridge {
    child: Child,
    base: String,
}

impl Bridge {
    async fn start(config: &std::path::Path, port: u16) -> Bridge {
        Bridge::start_logging(config, port, None).await
    }

    /// With `log`, every log line down to debug goes to that file.
    async fn start_logging(
        config: &std::path::Path,
        port: u16,
        log: Option<&std::path::Path>,
    ) -> Bridge {
        let (level, stderr) = match log {
            Some(path) => ("debug", Stdio::from(std::fs::File::create(path).unwrap())),
            None => ("error", Stdio::null()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the bridge did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Bridge { child, base }
    }
}

impl Bridge {
    /// Sends SIGTERM and waits (bounded) for the bridge to exit; its exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(sandbox: &Sandbox, dir: &std::path::Path) -> String {
    let mut targets = sandbox::default_targets_toml();
    for (port, kind) in [
        (18441, &targets::appgate::VENDOR),
        (18442, &targets::vikingcloud::VENDOR),
        (18443, &targets::kibo::VENDOR),
        (18444, &targets::primavera::VENDOR),
    ] {
        targets = targets.replace(
            &format!("http://127.0.0.1:{port}"),
            &sandbox.emulator(kind).unwrap().origin(),
        );
    }
    let targets = targets
        .replace("rate_limit_per_second = 20", "rate_limit_per_second = 5000")
        .replace("rate_limit_per_second = 50", "rate_limit_per_second = 5000")
        .replace("concurrency = 4", "concurrency = 16");
    format!(
        r#"
[database]
path = "{db}"
[scim]
dev_token = "{TOKEN}"
requests_per_second = 100000
[admin]
dev_token = "{ADMIN_TOKEN}"
[fanout]
key_file = "{key}"
mappings_dir = "{mappings}"
backoff_base_ms = 10
backoff_cap_ms = 200
poll_ms = 20
[sandbox]
start = false
{targets}"#,
        db = dir.join("bridge.db").display(),
        key = dir.join("secret.key").display(),
        mappings = mappings_dir().display(),
    )
}

async fn get_json(client: &reqwest::Client, url: String, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates user `n`; the status, or None when the connection broke.
async fn create(client: &reqwest::Client, base: &str, n: usize) -> Option<u16> {
    client
        .post(format!("{base}/scim/v2/Users"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(user(&format!("crash{n:05}")).to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Creates users `0..count`, 32 at a time; each answer's status (`None`: no answer).
async fn create_all(client: &reqwest::Client, base: &str, count: usize) -> Vec<Option<u16>> {
    stream::iter(0..count)
        .map(|n| create(client, base, n))
        .buffer_unordered(32)
        .collect()
        .await
}

/// The sandbox with Primavera's rate limit lifted, so a load is not paced by it, and a
/// bridge configuration for it in a fresh directory.
async fn unthrottled_setup() -> (Sandbox, tempfile::TempDir, std::path::PathBuf) {
    let mut sandbox_cfg = SandboxConfig::ephemeral();
    sandbox_cfg
        .emulator_mut(&targets::primavera::VENDOR)
        .unwrap()
        .rate_limit_per_second = None;
    let sandbox = sandbox::start(sandbox_cfg, Arc::new(SystemClock))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, config(&sandbox, dir.path())).unwrap();
    (sandbox, dir, config_path)
}

#[tokio::test]
async fn a_sigkill_mid_load_loses_nothing_and_duplicates_nothing() {
    let (sandbox, _dir, config_path) = unthrottled_setup().await;
    let port = free_port();
    let client = reqwest::Client::new();

    let mut bridge = Bridge::start(&config_path, port).await;
    let base = bridge.base.clone();
    let acked = Arc::new(AtomicUsize::new(0));
    let load = {
        let client = client.clone();
        let acked = Arc::clone(&acked);
        tokio::spawn(async move {
            stream::iter(0..USERS)
                .map(|n| {
                    let client = client.clone();
                    let base = base.clone();
                    let acked = Arc::clone(&acked);
                    async move {
                        let status = create(&client, &base, n).await;
                        if status == Some(201) {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        (n, status)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    // Kill once a good share of the load was accepted, while the rest is still arriving.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < USERS / 4 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bridge.child.kill().unwrap();
    bridge.child.wait().unwrap();
    let first: HashMap<usize, Option<u16>> = load.await.unwrap().into_iter().collect();
    let acknowledged = first.values().filter(|s| **s == Some(201)).count();
    assert!(
        acknowledged > 0 && acknowledged < USERS,
        "killed mid-load: {acknowledged}"
    );

    // Restart; the identity provider retries what it got no answer for.
    let bridge = Bridge::start(&config_path, port).await;
    for n in 0..USERS {
        if first[&n] != Some(201) {
            let status = create(&client, &bridge.base, n).await;
            assert!(
                matches!(status, Some(201) | Some(409)),
                "retry of {n}: {status:?}"
            );
        }
    }
    // The latest state: every user renamed after the restart.
    let list: Value = get_json(
        &client,
        format!("{}/scim/v2/Users?count=0", bridge.base),
        TOKEN,
    )
    .await;
    assert_eq!(list["totalResults"], USERS);
    let mut ids = Vec::new();
    for page in 0..(USERS / 1000) {
        let list: Value = get_json(
            &client,
            format!(
                "{}/scim/v2/Users?startIndex={}&count=1000&attributes=id",
                bridge.base,
                page * 1000 + 1
            ),
            TOKEN,
        )
        .await;
        for u in list["Resources"].as_array().unwrap() {
            ids.push(u["id"].as_str().unwrap().to_owned());
        }
    }
    stream::iter(ids)
        .for_each_concurrent(16, |id| {
            let client = client.clone();
            let base = bridge.base.clone();
            async move {
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "name.familyName", "value": "Final"}]
                });
                let response = client
                    .patch(format!("{base}/scim/v2/Users/{id}"))
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
        .await;

    // Wait (bounded) for every target to hold every user's latest state. Generous: a debug
    // build on a loaded 2-core machine delivers a few hundred a second.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let lag: Value = get_json(
            &client,
            format!("{}/admin/targets", bridge.base),
            ADMIN_TOKEN,
        )
        .await;
        let targets = lag["targets"].as_array().unwrap();
        // Every rename planned (the planner may trail a burst), and every target holding it.
        if lag["planning"] == 0 && targets.iter().all(|t| t["delivered"] == USERS) {
            break;
        }
        if Instant::now() >= deadline {
            let failed: Value = get_json(
                &client,
                format!("{}/admin/deliveries?state=failed", bridge.base),
                ADMIN_TOKEN,
            )
            .await;
            panic!(
                "deliveries did not complete: {lag}\nfirst failure: {}",
                failed["deliveries"][0]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for kind in targets::VENDORS {
        let live = crate::support::live_accounts(&sandbox, kind);
        assert_eq!(live.len(), USERS, "{kind:?}: exactly one account per user");
        assert!(
            live.iter().all(|a| a.fields["lastName"] == "Final"),
            "{kind:?}: every account holds the latest state"
        );
    }
}

/// Users created, every one acknowledged, then the bridge killed before its planner caught
/// up: the marks committed with the creates are all the restarted bridge has to go on.
#[tokio::test]
async fn marks_left_by_a_sigkill_are_planned_at_restart_and_delivered_once() {
    const CREATED: usize = 400;
    let (sandbox, dir, config_path) = unthrottled_setup().await;
    let port = free_port();
    let client = reqwest::Client::new();

    let mut bridge = Bridge::start(&config_path, port).await;
    let statuses = create_all(&client, &bridge.base, CREATED).await;
    bridge.child.kill().unwrap();
    bridge.child.wait().unwrap();
    assert!(statuses.iter().all(|s| *s == Some(201)), "{statuses:?}");

    let Left {
        marks, unplanned, ..
    } = left_in(dir.path());
    assert!(
        unplanned > 0,
        "the kill came after every user was planned ({marks} marks left)"
    );
    // Every user without a desired state is one the planner still has to plan.
    assert!(
        marks >= unplanned,
        "{marks} marks, {unplanned} users unplanned"
    );

    // No SCIM write after the restart: only the marks can bring these users to the targets.
    let bridge = Bridge::start(&config_path, port).await;
    planned_and_delivered_once(&client, &bridge, &sandbox, CREATED).await;
}

/// What a stopped bridge left in its ledger file.
struct Left {
    /// Users still marked to be planned.
    marks: i64,
    /// Users with no desired state for any target.
    unplanned: i64,
    /// Users with desired states for only some of the four targets.
    partly: i64,
}

fn left_in(dir: &std::path::Path) -> Left {
    let ledger = rusqlite::Connection::open(dir.join("bridge.db")).unwrap();
    let count = |sql: &str| -> i64 { ledger.query_row(sql, [], |r| r.get(0)).unwrap() };
    Left {
        marks: count("SELECT count(*) FROM plan_queue"),
        unplanned: count(
            "SELECT count(*) FROM users WHERE id NOT IN (SELECT user_id FROM deliveries)",
        ),
        partly: count(
            "SELECT count(*) FROM (SELECT user_id FROM deliveries GROUP BY user_id \
             HAVING count(*) <> 4)",
        ),
    }
}

/// Waits (bounded) until no mark is left and every target holds `created` users, each as
/// exactly one account.
async fn planned_and_delivered_once(
    client: &reqwest::Client,
    bridge: &Bridge,
    sandbox: &Sandbox,
    created: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lag: Value = get_json(
            client,
            format!("{}/admin/targets", bridge.base),
            ADMIN_TOKEN,
        )
        .await;
        let targets = lag["targets"].as_array().unwrap();
        if lag["planning"] == 0 && targets.iter().all(|t| t["delivered"] == created) {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {lag}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for kind in targets::VENDORS {
        let live = crate::support::live_accounts(sandbox, kind);
        assert_eq!(
            live.len(),
            created,
            "{kind:?}: exactly one account per user"
        );
    }
}

/// The size of the database's write-ahead log; 0 when it is gone.
fn wal_size(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("bridge.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Users created, every one acknowledged, then SIGTERM while the planner is still at work:
/// it stops after the batch in flight, so the final checkpoint folds the whole log into the
/// database; the marks it did not reach stay, and the next start plans and delivers them.
#[tokio::test]
async fn sigterm_with_marks_pending_keeps_them_checkpoints_and_the_restart_plans_them() {
    const CREATED: usize = 2000;
    let (sandbox, dir, config_path) = unthrottled_setup().await;
    let port = free_port();
    let client = reqwest::Client::new();

    let log = dir.path().join("b.log");
    let mut bridge = Bridge::start_logging(&config_path, port, Some(&log)).await;
    // Kibo's answers take a while, so deliveries are in flight at the SIGTERM and the
    // fan-out's grace period lasts: time a planner left running would plan every mark in.
    let kibo = sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.set_faults(Faults {
        latency_ms: 3000,
        ..Faults::default()
    });
    let statuses = create_all(&client, &bridge.base, CREATED).await;
    assert!(statuses.iter().all(|s| *s == Some(201)), "{statuses:?}");
    let status = bridge.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(wal_size(dir.path()), 0, "the final checkpoint left a log");
    let logged = std::fs::read_to_string(&log).unwrap();
    for warning in [
        "final WAL checkpoint failed",
        "planning failed",
        "planner was still at work",
    ] {
        assert!(!logged.contains(warning), "logged at shutdown: {warning}");
    }

    let Left {
        marks,
        unplanned,
        partly,
    } = left_in(dir.path());
    assert!(
        marks > 0,
        "no mark left: the planner went on after the SIGTERM (or caught up before it)"
    );
    // Each user is planned for every target or still marked: no batch half recorded, and
    // no mark cleared without its desired states.
    assert_eq!(marks, unplanned, "every unplanned user keeps its mark");
    assert_eq!(partly, 0, "users planned for only some targets");

    kibo.set_faults(Faults::default());
    let bridge = Bridge::start(&config_path, port).await;
    planned_and_delivered_once(&client, &bridge, &sandbox, CREATED).await;
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_folds_the_log_into_the_database_and_logs_no_secret() {
    let sandbox = sandbox::start(SandboxConfig::ephemeral(), Arc::new(SystemClock))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, config(&sandbox, dir.path())).unwrap();
    let log = dir.path().join("bridge.log");
    let mut bridge = Bridge::start_logging(&config_path, free_port(), Some(&log)).await;
    let client = reqwest::Client::new();
    let mut body = user("logged");
    body["password"] = json!("Log-Marker-Passw0rd!");
    let created = client
        .post(format!("{}/scim/v2/Users", bridge.base))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Let the password travel to its targets, so every code path that handles it has run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox
        .emulator(&targets::appgate::VENDOR)
        .unwrap()
        .accounts()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = bridge.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        wal_size(dir.path()),
        0,
        "the WAL was checkpointed at shutdown"
    );
    let ledger = rusqlite::Connection::open(dir.path().join("bridge.db")).unwrap();
    let users: i64 = ledger
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 1);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("delivery attempt"), "debug logging was on");
    // (The development tokens are printed at start on purpose; configured secrets are not.)
    for secret in [
        "Log-Marker-Passw0rd!",
        "sandbox-password",
        "sandbox-client-secret",
    ] {
        assert!(!logged.contains(secret), "{secret} appears in the log");
    }
}
