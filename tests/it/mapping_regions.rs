//! Users from outside the US, end to end: created over SCIM with national-format phone numbers,
//! rendered in their own region and delivered to every emulator; a value that cannot be mapped
//! leaves the user's field out, and the warning shows in the admin API, the ledger CLI and
//! /metrics.

use reqwest::Method;
use serde_json::Value;

use scim_bridge::targets;
use scim_bridge::targets::vendor::Vendor;

use crate::support::{json_of, SyncedApp};

/// A golden fixture user as an identity provider would create it (no server-assigned parts).
fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("tests/golden/users/{name}.json")).unwrap();
    let mut user: Value = serde_json::from_str(&text).unwrap();
    if let Some(fields) = user.as_object_mut() {
        for assigned in ["id", "meta", "groups"] {
            fields.remove(assigned);
        }
    }
    user
}

fn account(synced: &SyncedApp, kind: &Vendor, key: &str, email: &str) -> Value {
    let accounts = synced.live_accounts(kind);
    let found = accounts
        .iter()
        .find(|a| a.fields[key] == email)
        .unwrap_or_else(|| panic!("{kind:?} has no account {email}"));
    Value::Object(found.fields.clone())
}

#[tokio::test]
async fn a_german_user_reaches_every_target_with_german_numbers() {
    let synced = SyncedApp::spawn().await;
    synced.app.create_user(&fixture("germany_okta")).await;
    synced.app.create_user(&fixture("france_entra")).await;
    let lag = synced.settle(2).await;
    assert!(
        lag.iter()
            .all(|t| t["delivered"] == 2 && t["rejected"] == 0),
        "every emulator accepts both: {lag:?}"
    );

    let jonas = "jonas.mueller@example.de";
    let appgate = account(&synced, &targets::appgate::VENDOR, "name", jonas);
    assert_eq!(appgate["phone"], "+4915123456789");
    let kibo = account(&synced, &targets::kibo::VENDOR, "emailAddress", jonas);
    assert_eq!(kibo["phoneNumber"], "+49301234567");
    let primavera = account(&synced, &targets::primavera::VENDOR, "email", jonas);
    assert_eq!(primavera["mobile"], "+4915123456789");
    assert_eq!(primavera["phone"], "+49301234567");
    let viking = account(&synced, &targets::vikingcloud::VENDOR, "email", jonas);
    assert_eq!(viking["primaryPhoneCountryCode"], "49");
    assert_eq!(viking["primaryPhone"], "301234567");

    let elodie = "elodie.lefevre@contoso.fr";
    let appgate = account(&synced, &targets::appgate::VENDOR, "name", elodie);
    assert_eq!(appgate["phone"], "+33612345678");
    let kibo = account(&synced, &targets::kibo::VENDOR, "emailAddress", elodie);
    assert_eq!(kibo["phoneNumber"], "+33612345678");
    let primavera = account(&synced, &targets::primavera::VENDOR, "email", elodie);
    assert_eq!(primavera["mobile"], "+33612345678");
    let viking = account(&synced, &targets::vikingcloud::VENDOR, "email", elodie);
    assert_eq!(viking["primaryPhoneCountryCode"], "33");
    assert_eq!(viking["primaryPhone"], "612345678");
}

#[tokio::test]
async fn a_garbage_mobile_is_left_out_and_the_warning_is_visible() {
    let synced = SyncedApp::spawn().await;
    let created = synced.app.create_user(&fixture("garbage_mobile")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let lag = synced.settle(1).await;
    assert!(
        lag.iter()
            .all(|t| t["delivered"] == 1 && t["rejected"] == 0),
        "the user is delivered everywhere: {lag:?}"
    );
    let lena = "lena.schmidt@example.de";
    let primavera = account(&synced, &targets::primavera::VENDOR, "email", lena);
    assert!(primavera.get("mobile").is_none(), "{primavera}");
    assert_eq!(primavera["phone"], "+49307654321");

    let view = json_of(
        synced
            .admin(Method::GET, &format!("/users/{id}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let warnings_of = |target: &str| {
        view["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["desired"]["target"] == target)
            .unwrap()["warnings"]
            .clone()
    };
    assert_eq!(
        warnings_of("primavera"),
        serde_json::json!([{
            "field": "mobile",
            "value": "n/a (ask reception)",
            "reason": "'n/a (ask reception)' is not a readable phone number"
        }])
    );
    assert_eq!(warnings_of("appgate")[0]["field"], "phone");
    assert_eq!(warnings_of("kibo"), serde_json::json!([]));

    let omissions = json_of(
        synced
            .admin(Method::GET, "/omissions")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let counted: Vec<(String, String, u64)> = omissions["omissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["target"].as_str().unwrap().to_owned(),
                o["field"].as_str().unwrap().to_owned(),
                o["users"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counted,
        [
            ("appgate".to_owned(), "phone".to_owned(), 1),
            ("primavera".to_owned(), "mobile".to_owned(), 1)
        ]
    );

    let metrics = synced.metrics().await;
    assert!(
        metrics.contains("scim_bridge_mapping_omissions{target=\"primavera\",field=\"mobile\"} 1"),
        "{metrics}"
    );

    // The ledger CLI, on the database file, shows the same.
    let db = synced.app.dir.path().join("bridge.db");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let shown = run(&["ledger", "show", &id]);
    assert!(
        shown.contains(
            "  warning: 'mobile' left out: 'n/a (ask reception)' is not a readable phone number"
        ),
        "{shown}"
    );
    let listed = run(&["ledger", "omissions"]);
    assert!(
        listed.contains("primavera          1 user without mobile, e.g. 'n/a (ask reception)'"),
        "{listed}"
    );

    // Fixed at the source: the warning goes with the next change.
    let patch = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "0151 7654321"}]
    });
    let response = synced.app.patch(&format!("/Users/{id}"), &patch).await;
    json_of(response, 200).await;
    synced.settle(1).await;
    let omissions = json_of(
        synced
            .admin(Method::GET, "/omissions")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(omissions["omissions"], serde_json::json!([]));
    let primavera = account(&synced, &targets::primavera::VENDOR, "email", lena);
    assert_eq!(primavera["mobile"], "+491517654321");
}
