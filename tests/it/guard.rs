//! The deprovisioning guard end to end: a burst of deactivations from the identity provider
//! is held on the target whose threshold it passes, flows to the others, and is then
//! released (sent once) or discarded (never sent) by an operator.

use reqwest::Method;
use serde_json::{json, Value};

use scim_bridge::clock::ManualClock;
use scim_bridge::config::Settings;
use scim_bridge::targets;
use scim_bridge::targets::config::GuardConfig;

use crate::support::{json_of, user, SyncedApp};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn active(value: bool) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": value}]})
}

/// Kibo holds past `kibo_max` deprovisions in ten minutes; the other targets take 500.
fn guards(kibo_max: u32) -> impl FnOnce(&mut Settings) {
    move |settings| {
        for (name, target) in settings.targets.iter_mut() {
            target.guard = GuardConfig {
                max_deprovisions: if name == "kibo" { kibo_max } else { 500 },
                window_secs: 600,
                max_percent: 100,
                ..GuardConfig::default()
            };
        }
    }
}

async fn create_users(synced: &SyncedApp, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let created = synced.app.create_user(&user(&format!("held{n:03}"))).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    synced.settle(count as u64).await;
    ids
}

fn kibo_inactive(synced: &SyncedApp) -> usize {
    synced
        .live_accounts(&targets::kibo::VENDOR)
        .iter()
        .filter(|a| a.fields["isActive"] == false)
        .count()
}

fn target<'a>(lag: &'a [Value], name: &str) -> &'a Value {
    lag.iter().find(|t| t["target"] == name).unwrap()
}

#[tokio::test]
async fn a_burst_is_held_on_one_target_flows_to_the_others_and_is_released_exactly_once() {
    let synced = SyncedApp::spawn_with(guards(50)).await;
    let app = &synced.app;
    let ids = create_users(&synced, 200).await;

    // The identity provider deactivates 150 users in a burst.
    for id in &ids[..150] {
        json_of(
            app.patch(&format!("/Users/{id}"), &active(false)).await,
            200,
        )
        .await;
    }
    let lag = synced.settle(100).await;
    let kibo = target(&lag, "kibo");
    assert_eq!(
        (kibo["held"].as_u64(), kibo["delivered"].as_u64()),
        (Some(100), Some(100)),
        "{kibo}"
    );
    assert_eq!(kibo_inactive(&synced), 50, "Kibo got exactly its threshold");
    for (name, kind) in [
        ("appgate", &targets::appgate::VENDOR),
        ("vikingcloud", &targets::vikingcloud::VENDOR),
        ("primavera", &targets::primavera::VENDOR),
    ] {
        assert_eq!(target(&lag, name)["held"], 0, "{name}");
        assert_eq!(target(&lag, name)["delivered"], 200, "{name}");
        let accounts = synced.live_accounts(kind);
        let disabled = accounts
            .iter()
            .filter(|a| {
                a.fields.get("disabled") == Some(&json!(true))
                    || a.fields.get("enabled") == Some(&json!(false))
                    || a.fields.get("status") == Some(&json!("INACTIVE"))
            })
            .count();
        assert_eq!(disabled, 150, "{name} deprovisioned them all");
    }
    let metrics = synced.metrics().await;
    assert!(
        metrics.contains("scim_bridge_guard_held{target=\"kibo\"} 100"),
        "{metrics}"
    );
    assert!(metrics.contains("scim_bridge_guard_held{target=\"appgate\"} 0"));

    // What is held, for review.
    let held = synced.admin_ok(Method::GET, "/targets/kibo/held").await;
    assert_eq!(held["held"], 100);
    let listed = held["deliveries"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert!(listed
        .iter()
        .all(|d| d["state"] == "held" && d["desired"]["operation"] == "disable"));

    // Creates and updates keep flowing to the held target.
    let newcomer = app.create_user(&user("newcomer")).await;
    let rename = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "name.familyName", "value": "Renamed"}]});
    json_of(
        app.patch(&format!("/Users/{}", ids[199]), &rename).await,
        200,
    )
    .await;
    synced.settle(101).await;
    let kibo_accounts = synced.live_accounts(&targets::kibo::VENDOR);
    assert!(kibo_accounts
        .iter()
        .any(|a| a.fields["emailAddress"] == "newcomer@example.com"));
    assert!(kibo_accounts
        .iter()
        .any(|a| a.fields["lastName"] == "Renamed"));
    assert_eq!(newcomer["active"], true);

    // The same from the command line.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .arg("ledger")
            .args(args)
            .arg("--db")
            .arg(app.dir.path().join("bridge.db"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let status = cli(&["status"]);
    let kibo_line = status.lines().find(|l| l.starts_with("kibo")).unwrap();
    assert!(kibo_line.contains("HELD: 100 deprovisions"), "{status}");
    let listed = cli(&["held", "--target", "kibo"]);
    assert!(
        listed.starts_with("100 deprovisions held on kibo"),
        "{listed}"
    );
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains(" held ") && l.contains(" disable "))
            .count(),
        100,
        "{listed}"
    );

    // Released from the command line against the running bridge's database.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["ledger", "release", "kibo", "--db"])
        .arg(app.dir.path().join("bridge.db"))
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(String::from_utf8_lossy(&cli.stdout).contains("100 held deprovisions of kibo released"));
    let kibo = synced
        .until_target("kibo", |t| t["held"] == 0 && t["pending"] == 0)
        .await;
    assert_eq!(kibo["delivered"], 201, "{kibo}");
    assert_eq!(kibo_inactive(&synced), 150);
    // Each deactivated user reached Kibo exactly once: one create, one disabling update.
    let deactivated: Vec<String> = (0..150)
        .map(|n| format!("held{n:03}@example.com"))
        .collect();
    for account in synced.live_accounts(&targets::kibo::VENDOR) {
        let email = account.fields["emailAddress"].as_str().unwrap().to_owned();
        if deactivated.contains(&email) {
            assert_eq!(
                (account.counts.creates, account.counts.updates),
                (1, 1),
                "{email}"
            );
        }
    }
    let metrics = synced.metrics().await;
    assert!(
        metrics.contains("scim_bridge_guard_held{target=\"kibo\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn discarded_deprovisions_are_never_sent_and_a_reactivation_is_an_ordinary_update() {
    let synced = SyncedApp::spawn_with(guards(1)).await;
    let app = &synced.app;
    let ids = create_users(&synced, 25).await;
    for id in &ids[..3] {
        json_of(
            app.patch(&format!("/Users/{id}"), &active(false)).await,
            200,
        )
        .await;
    }
    let kibo = synced
        .until_target("kibo", |t| t["held"] == 2 && t["pending"] == 0)
        .await;
    assert_eq!(kibo["delivered"], 23);

    assert_eq!(
        synced.admin_ok(Method::POST, "/targets/kibo/discard").await["discarded"],
        2
    );
    let kibo = synced.until_target("kibo", |t| t["held"] == 0).await;
    assert_eq!(kibo["pending"], 0);
    assert_eq!(
        kibo_inactive(&synced),
        1,
        "the discarded two were never sent"
    );
    let status = synced
        .admin_ok(Method::GET, &format!("/users/{}", ids[2]))
        .await;
    let kibo_row = status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["desired"]["target"] == "kibo")
        .unwrap();
    assert_eq!(kibo_row["state"], "delivered");
    assert!(kibo_row["last_error"]
        .as_str()
        .unwrap()
        .contains("discarded by admin:development"));
    // The newest of Kibo's attempts (other targets may still be delivering the disable).
    let kibo_history = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|attempt| attempt["target"] == "kibo")
        .unwrap();
    assert_eq!(kibo_history["outcome"], "discarded", "{status}");

    // Re-activated upstream: Kibo gets an update of the account it still has, not a create.
    json_of(
        app.patch(&format!("/Users/{}", ids[2]), &active(true))
            .await,
        200,
    )
    .await;
    synced.settle(23).await;
    let account = synced
        .live_accounts(&targets::kibo::VENDOR)
        .into_iter()
        .find(|a| a.fields["emailAddress"] == "held002@example.com")
        .unwrap();
    assert_eq!(account.fields["isActive"], true);
    assert_eq!((account.counts.creates, account.counts.updates), (1, 1));

    // The guard is per target: nothing was ever held elsewhere.
    let lag = synced.lag().await;
    assert!(lag.iter().all(|t| t["held"] == 0), "{lag:?}");

    let response = synced
        .admin(Method::POST, "/targets/nope/release")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response, 404).await["error"], "not_found");
}

/// Released deprovisions go out at once: the worker is woken by the release, not found by
/// its next poll (ten minutes here, on a clock that never moves).
#[tokio::test]
async fn released_deprovisions_are_sent_at_once_not_at_the_next_poll() {
    let clock = std::sync::Arc::new(ManualClock::new(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
    ));
    let synced = SyncedApp::spawn_with_clock(clock, |settings| {
        guards(1)(settings);
        settings.fanout.poll_ms = 600_000;
        // The clock stands still, so the admin API's per-second budget never refills.
        settings.admin.requests_per_second = 1_000_000;
    })
    .await;
    let app = &synced.app;
    let ids = create_users(&synced, 4).await;
    for id in &ids[..3] {
        json_of(
            app.patch(&format!("/Users/{id}"), &active(false)).await,
            200,
        )
        .await;
    }
    synced
        .until_target("kibo", |t| t["held"] == 2 && t["pending"] == 0)
        .await;
    assert_eq!(kibo_inactive(&synced), 1);

    assert_eq!(
        synced.admin_ok(Method::POST, "/targets/kibo/release").await["released"],
        2
    );
    let kibo = synced
        .until_target("kibo", |t| t["held"] == 0 && t["pending"] == 0)
        .await;
    assert_eq!(kibo["delivered"], 4, "{kibo}");
    assert_eq!(kibo_inactive(&synced), 3, "both released ones were sent");
}
