//! The fan-out end to end: SCIM writes through the real server, delivered by the workers to
//! the sandbox emulators, asserted on what each emulator received.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scim_bridge::clock::ManualClock;
use scim_bridge::sandbox::Faults;
use scim_bridge::targets;
use scim_bridge::targets::vendor::Vendor;

use crate::support::{json_of, user, SyncedApp};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn with_password(name: &str) -> Value {
    let mut body = user(name);
    body["password"] = json!("Initial-Passw0rd!");
    body["phoneNumbers"] = json!([{"value": "+1 415 555 0100", "type": "mobile"}]);
    body
}

#[tokio::test]
async fn two_hundred_users_arrive_on_every_target_with_their_mapped_fields() {
    let synced = SyncedApp::spawn().await;
    let app = &synced.app;
    for n in 0..200 {
        app.create_user(&with_password(&format!("user{n:03}")))
            .await;
    }
    let lag = synced.settle(200).await;
    assert!(
        lag.iter()
            .all(|t| t["delivered"] == 200 && t["rejected"] == 0),
        "{lag:?}"
    );

    for kind in targets::VENDORS {
        let accounts = synced.live_accounts(kind);
        assert_eq!(accounts.len(), 200, "{kind:?}");
        assert!(
            accounts.iter().all(|a| a.counts.creates == 1),
            "{kind:?}: one create each"
        );
    }
    let appgate = synced.live_accounts(&targets::appgate::VENDOR);
    let ana = appgate
        .iter()
        .find(|a| a.fields["name"] == "user007")
        .unwrap();
    assert_eq!(ana.fields["firstName"], "Given");
    assert_eq!(ana.fields["lastName"], "Family");
    assert_eq!(ana.fields["phone"], "+14155550100");
    assert_eq!(ana.fields["disabled"], false);
    assert!(ana.secrets_set.contains(&"password".to_owned()));

    let viking = synced.live_accounts(&targets::vikingcloud::VENDOR);
    let v = viking
        .iter()
        .find(|a| a.fields["email"] == "user007@example.com")
        .unwrap();
    assert_eq!(v.fields["primaryPhone"], "4155550100");
    assert_eq!(v.fields["primaryPhoneCountryCode"], "1");

    let prima = synced.live_accounts(&targets::primavera::VENDOR);
    let p = prima
        .iter()
        .find(|a| a.fields["email"] == "user007@example.com")
        .unwrap();
    assert_eq!(p.fields["status"], "ACTIVE");

    // Every target but Kibo (which wants it on every update) has let the password go.
    let ledger = rusqlite::Connection::open(app.dir.path().join("bridge.db")).unwrap();
    let kept: i64 = ledger
        .query_row("SELECT COUNT(*) FROM user_secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 200, "Kibo keeps each user's sealed password");
    let db_text = std::fs::read(app.dir.path().join("bridge.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db_text).contains("Initial-Passw0rd!"));
}

#[tokio::test]
async fn updates_deactivation_and_delete_follow_each_targets_policy() {
    let synced = SyncedApp::spawn().await;
    let app = &synced.app;
    let created = app.create_user(&with_password("mover")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    synced.settle(1).await;

    let rename = patch(json!([{"op": "replace", "path": "name.familyName", "value": "Renamed"}]));
    json_of(app.patch(&path, &rename).await, 200).await;
    synced.settle(1).await;
    for kind in targets::VENDORS {
        let account = &synced.live_accounts(kind)[0];
        assert_eq!(account.fields["lastName"], "Renamed", "{kind:?}");
        assert_eq!(account.counts.updates, 1, "{kind:?}");
    }

    let deactivate = patch(json!([{"op": "Replace", "value": {"active": "False"}}]));
    json_of(app.patch(&path, &deactivate).await, 200).await;
    synced.settle(1).await;
    let field = |kind: &Vendor, name: &str| synced.live_accounts(kind)[0].fields[name].clone();
    assert_eq!(field(&targets::appgate::VENDOR, "disabled"), true);
    assert_eq!(field(&targets::kibo::VENDOR, "isActive"), false);
    assert_eq!(field(&targets::primavera::VENDOR, "status"), "INACTIVE");
    assert_eq!(field(&targets::vikingcloud::VENDOR, "enabled"), false);

    assert_eq!(app.delete(&path).await.status(), 204);
    synced.settle(0).await;
    // Appgate's mapping deletes; the others keep the account disabled.
    assert!(synced.live_accounts(&targets::appgate::VENDOR).is_empty());
    for kind in [
        &targets::kibo::VENDOR,
        &targets::primavera::VENDOR,
        &targets::vikingcloud::VENDOR,
    ] {
        assert_eq!(synced.live_accounts(kind).len(), 1, "{kind:?}");
    }
    let ledger = rusqlite::Connection::open(app.dir.path().join("bridge.db")).unwrap();
    let kept: i64 = ledger
        .query_row("SELECT COUNT(*) FROM user_secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        kept, 0,
        "the password is gone once the deleted user's last state arrived"
    );
}

#[tokio::test]
async fn a_target_that_is_down_loses_nothing_delays_no_one_and_gets_coalesced_updates() {
    // The default 8 attempts, at retries of at most 200 ms: an outage of a few seconds
    // outlasts them many times over.
    let synced = SyncedApp::spawn().await;
    let app = &synced.app;
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let mut paths = Vec::new();
    for n in 0..20 {
        let created = app
            .create_user(&with_password(&format!("down{n:02}")))
            .await;
        paths.push(format!("/Users/{}", created["id"].as_str().unwrap()));
    }
    for round in 1..=3 {
        for path in &paths {
            let change = patch(
                json!([{"op": "replace", "path": "name.givenName", "value": format!("Round{round}")}]),
            );
            json_of(app.patch(path, &change).await, 200).await;
        }
    }
    // The other targets are served meanwhile.
    for target in ["appgate", "primavera", "vikingcloud"] {
        synced
            .until_target(target, |t| {
                t["delivered"] == 20 && t["pending"] == 0 && t["retrying"] == 0
            })
            .await;
    }
    // The circuit is open: the bridge probes with one delivery at a time, and no user is
    // charged for the target's outage, however long it lasts.
    let kibo_row = synced
        .until_target("kibo", |t| {
            t["circuit"]["state"] != "closed"
                && t["circuit"]["failed_probes"]
                    .as_u64()
                    .is_some_and(|probes| probes > 10)
        })
        .await;
    assert_eq!(kibo_row["delivered"], 0, "{kibo_row}");
    assert_eq!(kibo_row["dead"], 0, "{kibo_row}");
    assert_eq!(kibo_row["circuit"]["last_status"], 503, "{kibo_row}");
    assert!(kibo_row["oldest_change_at"].is_number());
    assert!(kibo.accounts().is_empty());
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["ledger", "status", "--db"])
        .arg(app.dir.path().join("bridge.db"))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let kibo_line = status.lines().find(|l| l.starts_with("kibo")).unwrap();
    assert!(
        kibo_line.contains("open since") || kibo_line.contains("half-open since"),
        "{status}"
    );
    assert!(kibo_line.contains("503"), "{status}");
    let metrics = synced.metrics().await;
    assert!(
        metrics.contains("scim_bridge_target_circuit{target=\"kibo\",state=\"closed\"} 0")
            && metrics
                .contains("scim_bridge_target_circuit{target=\"appgate\",state=\"closed\"} 1"),
        "{metrics}"
    );

    // The target comes back: everything arrives without a replay.
    kibo.set_faults(Faults::default());
    let lag = synced.settle(20).await;
    assert!(lag.iter().all(|t| t["dead"] == 0), "{lag:?}");
    let kibo_row = lag.iter().find(|t| t["target"] == "kibo").unwrap();
    assert_eq!(kibo_row["circuit"]["state"], "closed", "{kibo_row}");
    let accounts = synced.live_accounts(&targets::kibo::VENDOR);
    assert_eq!(accounts.len(), 20);
    for account in accounts {
        // One create with the latest state: the three rounds of updates were coalesced.
        assert_eq!(account.counts.creates, 1);
        assert_eq!(account.counts.updates, 0);
        assert_eq!(account.fields["firstName"], "Round3");
    }
}

#[tokio::test]
async fn dead_letters_and_rejections_are_visible_and_replayable() {
    let synced = SyncedApp::spawn_with(|settings| settings.fanout.max_attempts = 2).await;
    let app = &synced.app;
    let appgate = synced.sandbox.emulator(&targets::appgate::VENDOR).unwrap();
    // A target that is merely down is waited for, not dead-lettered; one that answers with
    // server errors (500 and 503, half and half) charges the user's attempts.
    appgate.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    // Someone created a Kibo admin by hand with the same user name and another email: Kibo
    // refuses the bridge's account, in its own words.
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.insert_account(crate::support::object(json!({
        "emailAddress": "someone.else@example.com",
        "userName": "clash",
        "firstName": "Some",
        "lastName": "One",
        "isActive": true
    })));
    let created = app.create_user(&user("clash")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.until_target("appgate", |t| t["dead"] == 1).await;
    synced.until_target("kibo", |t| t["rejected"] == 1).await;

    let failed = synced
        .admin(Method::GET, "/deliveries?state=failed")
        .send()
        .await
        .unwrap();
    let failed = json_of(failed, 200).await;
    let rows = failed["deliveries"].as_array().unwrap();
    let rejected = rows
        .iter()
        .find(|r| r["desired"]["target"] == "kibo")
        .unwrap();
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["last_status"], 409);
    let reason = rejected["last_error"].as_str().unwrap().to_owned();
    assert!(!reason.is_empty());
    let dead = rows
        .iter()
        .find(|r| r["desired"]["target"] == "appgate")
        .unwrap();
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{dead}"
    );

    let user_view = json_of(
        synced
            .admin(Method::GET, &format!("/users/{id}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(!user_view["history"].as_array().unwrap().is_empty());
    assert!(!user_view.to_string().contains("password\":\""));

    // The operator's CLI shows the same reason, from the database file.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["ledger", "list", "--state", "rejected", "--db"])
        .arg(app.dir.path().join("bridge.db"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(listed.contains(&id) && listed.contains(&reason), "{listed}");

    // Both causes are fixed; an operator replays the user's failed deliveries.
    appgate.set_faults(Faults::default());
    kibo.reset();
    let replay = synced
        .admin(Method::POST, "/replay")
        .json(&json!({"user_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(replay, 200).await["replayed"], 2);
    synced.settle(1).await;
    assert_eq!(synced.live_accounts(&targets::appgate::VENDOR).len(), 1);
    let kibo_accounts = synced.live_accounts(&targets::kibo::VENDOR);
    assert_eq!(kibo_accounts.len(), 1);
    assert_eq!(kibo_accounts[0].fields["userName"], "clash");

    let unknown = synced
        .admin(Method::POST, "/targets/nope/pause")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let anonymous = app
        .client
        .get(format!("{}/admin/targets", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn throttling_is_retried_and_primaveras_limit_is_never_exceeded() {
    let synced = SyncedApp::spawn_with(|settings| {
        settings.fanout.max_attempts = 100_000;
        // The emulator counts arrivals per clock second; on a loaded test machine requests
        // sent evenly can arrive bunched, so keep the margin a production config should keep.
        if let Some(primavera) = settings.targets.get_mut("primavera") {
            primavera.rate_limit_per_second = 40;
        }
    })
    .await;
    let app = &synced.app;
    let vikingcloud = synced
        .sandbox
        .emulator(&targets::vikingcloud::VENDOR)
        .unwrap();
    vikingcloud.set_faults(Faults {
        throttle: true,
        retry_after: Some("0".into()),
        ..Faults::default()
    });
    for n in 0..120 {
        app.create_user(&user(&format!("burst{n:03}"))).await;
    }
    synced
        .until_target("vikingcloud", |t| t["retrying"].as_u64().unwrap() > 0)
        .await;
    vikingcloud.set_faults(Faults::default());
    synced.settle(120).await;

    let ledger = rusqlite::Connection::open(app.dir.path().join("bridge.db")).unwrap();
    let throttled: i64 = ledger
        .query_row(
            "SELECT COUNT(*) FROM delivery_attempts WHERE target = 'primavera' AND outcome != 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        throttled, 0,
        "the adapter's pacing kept Primavera under its limit"
    );
    let names: HashSet<String> = synced
        .live_accounts(&targets::vikingcloud::VENDOR)
        .iter()
        .map(|a| a.fields["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 120);
}

#[tokio::test]
async fn an_update_before_the_first_delivery_keeps_the_password_the_create_needs() {
    // Kibo cannot create an account without a password: the bridge makes one up for the
    // create when the identity provider sends none. A PATCH that lands before that create
    // went out must not drop it.
    let synced = SyncedApp::spawn().await;
    synced.admin_ok(Method::POST, "/targets/kibo/pause").await;
    let created = synced.app.create_user(&user("early")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let rename = patch(json!([{"op": "replace", "path": "displayName", "value": "Renamed"}]));
    json_of(synced.app.patch(&path, &rename).await, 200).await;
    synced.admin_ok(Method::POST, "/targets/kibo/resume").await;
    let lag = synced.settle(1).await;
    assert!(
        lag.iter()
            .all(|t| t["delivered"] == 1 && t["rejected"] == 0),
        "{lag:?}"
    );
    let kibo = synced.live_accounts(&targets::kibo::VENDOR);
    assert_eq!(kibo[0].secret_writes["password"], 1);
}

#[tokio::test]
async fn pause_holds_deliveries_and_resume_releases_them() {
    let synced = SyncedApp::spawn().await;
    synced
        .admin_ok(Method::POST, "/targets/primavera/pause")
        .await;
    synced.app.create_user(&user("held")).await;
    synced
        .until_target("appgate", |t| t["delivered"] == 1)
        .await;
    let row = synced
        .until_target("primavera", |t| t["paused"] == true)
        .await;
    assert_eq!(row["pending"], 1);
    assert!(synced.live_accounts(&targets::primavera::VENDOR).is_empty());
    synced
        .admin_ok(Method::POST, "/targets/primavera/resume")
        .await;
    synced
        .until_target("primavera", |t| t["delivered"] == 1)
        .await;
    let metrics = synced.metrics().await;
    assert!(
        metrics
            .contains("scim_bridge_deliveries_total{target=\"primavera\",outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("scim_bridge_accepted_writes_total{resource=\"User\",operation=\"create\"} 1"));
}

#[tokio::test]
async fn mapping_reload_applies_a_valid_change_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::support::mappings_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let mappings = dir.path().to_owned();
    let synced =
        SyncedApp::spawn_with(move |settings| settings.fanout.mappings_dir = mappings).await;
    synced.app.create_user(&user("reloaded")).await;
    synced.settle(1).await;

    let appgate_file = dir.path().join("appgate.toml");
    let original = std::fs::read_to_string(&appgate_file).unwrap();
    let changed = original.replace(
        "Provisioned by scim-bridge from the identity provider; edits made here are overwritten.",
        "Managed by scim-bridge.",
    );
    assert_ne!(
        changed, original,
        "the test edits the shipped notes constant"
    );
    std::fs::write(&appgate_file, &changed).unwrap();
    let reload = synced
        .admin(Method::POST, "/mappings/reload")
        .send()
        .await
        .unwrap();
    let report = json_of(reload, 200).await;
    assert_eq!(report["report"]["users"], 1);
    synced
        .until_target("appgate", |t| t["delivered"] == 1 && t["pending"] == 0)
        .await;
    let account = synced.live_accounts(&targets::appgate::VENDOR)[0].clone();
    assert_eq!(account.fields["notes"], "Managed by scim-bridge.");
    assert_eq!(account.counts.updates, 1);
    // The other targets' payloads did not change: nothing was sent to them.
    assert_eq!(
        synced.live_accounts(&targets::kibo::VENDOR)[0]
            .counts
            .updates,
        0
    );

    std::fs::write(
        &appgate_file,
        changed.replace("[deprovision]", "[deprovisioning]"),
    )
    .unwrap();
    let refused = synced
        .admin(Method::POST, "/mappings/reload")
        .send()
        .await
        .unwrap();
    let refused = json_of(refused, 400).await;
    assert_eq!(refused["reloaded"], false);
    assert!(
        refused["errors"].to_string().contains("appgate.toml"),
        "{refused}"
    );
    // The previous mappings stay in force.
    synced.app.create_user(&user("after-refusal")).await;
    synced.settle(2).await;
    let newest = synced
        .live_accounts(&targets::appgate::VENDOR)
        .into_iter()
        .find(|a| a.fields["name"] == "after-refusal")
        .unwrap();
    assert_eq!(newest.fields["notes"], "Managed by scim-bridge.");
}

#[tokio::test]
async fn group_membership_grants_and_releases_a_primavera_licence() {
    let synced = SyncedApp::spawn().await;
    let app = &synced.app;
    let scheduler = app.create_user(&user("scheduler")).await;
    let bystander = app.create_user(&user("bystander")).await;
    let uid = scheduler["id"].as_str().unwrap();
    synced.settle(2).await;
    let products = |name: &str| -> Value {
        synced
            .live_accounts(&targets::primavera::VENDOR)
            .into_iter()
            .find(|a| a.fields["email"] == format!("{name}@example.com"))
            .unwrap()
            .fields["userProducts"]
            .clone()
    };
    let holds_schedule = |products: &Value| {
        products
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["productName"] == "SCHEDULE" && p.get("action").is_none())
    };
    assert!(!holds_schedule(&products("scheduler")));

    let group = crate::support::group("Primavera Schedulers", &[uid]);
    let created = app.create_group(&group).await;
    synced.settle(2).await;
    assert!(
        holds_schedule(&products("scheduler")),
        "{}",
        products("scheduler")
    );
    // Only the member's deliveries changed.
    let bystander_updates = synced
        .live_accounts(&targets::primavera::VENDOR)
        .into_iter()
        .find(|a| a.fields["email"] == "bystander@example.com")
        .unwrap()
        .counts
        .updates;
    assert_eq!(bystander_updates, 0);
    let _ = bystander;

    let leave = patch(json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]));
    json_of(
        app.patch(
            &format!("/Groups/{}", created["id"].as_str().unwrap()),
            &leave,
        )
        .await,
        200,
    )
    .await;
    synced.settle(2).await;
    assert!(
        !holds_schedule(&products("scheduler")),
        "{}",
        products("scheduler")
    );
}

/// The role ids a Kibo emulator account holds.
fn kibo_roles(synced: &SyncedApp) -> Vec<i64> {
    let accounts = synced.live_accounts(&targets::kibo::VENDOR);
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    accounts[0].fields["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["roleId"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn kibo_roles_follow_group_membership_and_spare_hand_assigned_ones() {
    let synced = SyncedApp::spawn().await;
    let app = &synced.app;
    // A Kibo admin already exists, with the Admin role (1) given by hand: the bridge adopts
    // the account, and role 1 is not named in the mapping, so it is never removed.
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.insert_account(crate::support::object(json!({
        "emailAddress": "rolf@example.com", "firstName": "Rolf", "lastName": "Hand",
        "roles": [{"roleId": 1, "roleName": "Admin"}],
    })));
    let created = app.create_user(&with_password("rolf")).await;
    let user_id = created["id"].as_str().unwrap().to_owned();
    synced.settle(1).await;
    assert_eq!(kibo_roles(&synced), [1]);

    // Joining the catalog managers' group grants Kibo role 2.
    let group = app
        .create_group(&crate::support::group("Kibo Catalog Managers", &[&user_id]))
        .await;
    let group_path = format!("/Groups/{}", group["id"].as_str().unwrap());
    synced.settle(1).await;
    assert_eq!(kibo_roles(&synced), [1, 2]);

    // Leaving it removes role 2 and only role 2.
    let emptied = crate::support::group("Kibo Catalog Managers", &[]);
    json_of(app.put(&group_path, &emptied).await, 200).await;
    synced.settle(1).await;
    assert_eq!(kibo_roles(&synced), [1]);
    assert_eq!(
        synced.live_accounts(&targets::kibo::VENDOR)[0]
            .counts
            .role_calls,
        2,
        "one assign, one removal"
    );
}

#[tokio::test]
async fn a_throttling_storm_with_retry_after_is_waited_out_with_one_probe_per_wait() {
    // The brief's storm: 429 with `Retry-After: 5` for 50 s, on the default 8 attempts and
    // 1 s backoff. Before circuits it dead-lettered every queued user. The bridge reads
    // time from a clock the test moves; Kibo takes one delivery at a time, so every request
    // the emulator counts after the circuit opened is a probe.
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let synced = SyncedApp::spawn_with_clock(clock.clone(), |settings| {
        settings.fanout.backoff_base_ms = 1_000;
        settings.fanout.backoff_cap_ms = 300_000;
        if let Some(kibo) = settings.targets.get_mut("kibo") {
            kibo.concurrency = 1;
        }
    })
    .await;
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.set_faults(Faults {
        throttle: true,
        retry_after: Some("5".into()),
        ..Faults::default()
    });
    for n in 0..20 {
        synced.app.create_user(&user(&format!("storm{n:02}"))).await;
    }
    synced
        .until_target("kibo", |t| t["circuit"]["state"] == "open")
        .await;
    let opened_by = kibo.requests();
    assert_eq!(opened_by, 1, "one 429 naming a wait opens the circuit");
    for wait in 1..=10 {
        clock.advance(Duration::from_secs(5));
        let row = synced
            .until_target("kibo", |t| t["circuit"]["failed_probes"] == wait)
            .await;
        assert_eq!(row["circuit"]["state"], "open", "{row}");
        assert_eq!(kibo.requests(), opened_by + wait, "one probe per wait");
    }
    let waiting = json_of(
        synced
            .admin(Method::GET, "/deliveries?state=retrying&target=kibo")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let waiting = waiting["deliveries"].as_array().unwrap().clone();
    assert!(!waiting.is_empty());
    assert!(
        waiting
            .iter()
            .all(|d| d["attempts"] == 0 && d["last_status"] == 429),
        "Retry-After is not a failure of the user: {waiting:?}"
    );
    let lag = synced.lag().await;
    let row = lag.iter().find(|t| t["target"] == "kibo").unwrap();
    assert_eq!(
        (row["dead"].clone(), row["delivered"].clone()),
        (json!(0), json!(0))
    );

    // The storm ends: the next probe closes the circuit and everyone is delivered.
    kibo.set_faults(Faults::default());
    clock.advance(Duration::from_secs(5));
    let lag = synced.settle(20).await;
    assert!(lag.iter().all(|t| t["dead"] == 0), "{lag:?}");
    assert_eq!(synced.live_accounts(&targets::kibo::VENDOR).len(), 20);
}

/// A resume and a replay wake the target's worker: with a poll of ten minutes, what they make
/// due is still attempted at once.
#[tokio::test]
async fn resume_and_replay_are_acted_on_at_once_not_at_the_next_poll() {
    let synced = SyncedApp::spawn_with(|settings| settings.fanout.poll_ms = 600_000).await;
    synced.admin_ok(Method::POST, "/targets/kibo/pause").await;
    // A Kibo admin made by hand holds the user name: Kibo refuses the bridge's account.
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.insert_account(crate::support::object(json!({
        "emailAddress": "someone.else@example.com",
        "userName": "waker",
        "firstName": "Some",
        "lastName": "One",
        "isActive": true
    })));
    let created = synced.app.create_user(&user("waker")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced
        .until_target("kibo", |t| t["paused"] == true && t["pending"] == 1)
        .await;

    synced.admin_ok(Method::POST, "/targets/kibo/resume").await;
    synced.until_target("kibo", |t| t["rejected"] == 1).await;

    kibo.reset();
    let replay = synced
        .admin(Method::POST, "/replay")
        .json(&json!({"user_id": id, "target": "kibo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(replay, 200).await["replayed"], 1);
    synced.until_target("kibo", |t| t["delivered"] == 1).await;
    assert_eq!(
        synced.live_accounts(&targets::kibo::VENDOR)[0].fields["userName"],
        "waker"
    );
}
