//! Per-target scoping end to end: SCIM user and group writes through the real server, mapping
//! files with `[scope]`, and what each sandbox emulator holds afterwards.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use scim_bridge::sandbox::AccountSnapshot;
use scim_bridge::targets;
use scim_bridge::targets::vendor::Vendor;

use crate::support::{group, json_of, mappings_dir, user, SyncedApp};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// A scope to add to one target's shipped mapping: the filter and, if given, `out_of_scope`.
struct Scope<'a> {
    target: &'a str,
    filter: &'a str,
    out_of_scope: Option<&'a str>,
}

/// The shipped mappings in a directory of their own, with the given scopes added.
fn mappings_with(scopes: &[Scope<'_>]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(mappings_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        std::fs::copy(&path, dir.path().join(name)).unwrap();
    }
    for scope in scopes {
        write_scope(dir.path(), scope);
    }
    dir
}

fn write_scope(dir: &Path, scope: &Scope<'_>) {
    let file = dir.join(format!("{}.toml", scope.target));
    let mut text = std::fs::read_to_string(&file).unwrap();
    if let Some(policy) = scope.out_of_scope {
        assert_eq!(text.matches("[deprovision]\n").count(), 1);
        text = text.replace(
            "[deprovision]\n",
            &format!("[deprovision]\nout_of_scope = \"{policy}\"\n"),
        );
    }
    let text = format!("[scope]\nfilter = '{}'\n\n{text}", scope.filter);
    std::fs::write(file, text).unwrap();
}

async fn synced_with(mappings: &TempDir) -> SyncedApp {
    let dir = mappings.path().to_owned();
    SyncedApp::spawn_with(move |settings| settings.fanout.mappings_dir = dir).await
}

/// Every account the emulator has, deleted ones included, whose `field` is `value`.
fn accounts(synced: &SyncedApp, kind: &Vendor, field: &str, value: &str) -> Vec<AccountSnapshot> {
    synced
        .sandbox
        .emulator(kind)
        .unwrap()
        .accounts()
        .into_iter()
        .filter(|a| a.fields[field] == value)
        .collect()
}

/// The one live account whose `field` is `value`.
fn live(synced: &SyncedApp, kind: &Vendor, field: &str, value: &str) -> AccountSnapshot {
    let mut found: Vec<AccountSnapshot> = accounts(synced, kind, field, value)
        .into_iter()
        .filter(|a| !a.deleted)
        .collect();
    assert_eq!(found.len(), 1, "{kind:?} {field} = {value}: {found:?}");
    found.remove(0)
}

/// How many ledger rows `target` has for the user.
fn ledger_rows(synced: &SyncedApp, user_id: &str, target: &str) -> i64 {
    let ledger = rusqlite::Connection::open(synced.app.dir.path().join("bridge.db")).unwrap();
    ledger
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE user_id = ?1 AND target = ?2",
            [user_id, target],
            |row| row.get(0),
        )
        .unwrap()
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn joining_and_leaving_a_group_scope_provisions_and_disables_on_that_target_only() {
    let mappings = mappings_with(&[Scope {
        target: "primavera",
        filter: r#"groups[display eq "Primavera Schedulers"]"#,
        out_of_scope: None,
    }]);
    let synced = synced_with(&mappings).await;
    let app = &synced.app;
    let ana = id(&app.create_user(&user("ana")).await);
    let bo = id(&app.create_user(&user("bo")).await);
    let cy = id(&app.create_user(&user("cy")).await);
    synced.settle(0).await;
    let primavera = &targets::primavera::VENDOR;
    let appgate = &targets::appgate::VENDOR;
    assert!(synced.live_accounts(primavera).is_empty());
    assert_eq!(
        synced.live_accounts(appgate).len(),
        3,
        "Appgate takes everyone"
    );
    assert_eq!(
        ledger_rows(&synced, &ana, "primavera"),
        0,
        "nothing to deliver"
    );

    // Ana joins the licence group with the group's creation.
    let schedulers = app
        .create_group(&group("Primavera Schedulers", &[&ana]))
        .await;
    let group_path = format!("/Groups/{}", id(&schedulers));
    synced.settle(0).await;
    let account = live(&synced, primavera, "email", "ana@example.com");
    assert_eq!(account.fields["status"], "ACTIVE");
    assert_eq!(account.counts.creates, 1);
    assert_eq!(synced.live_accounts(primavera).len(), 1);

    // Entra ID's dialect: Bo is added, Ana removed, in one PATCH.
    let swap = patch(json!([
        {"op": "Add", "path": "members", "value": [{"value": bo}]},
        {"op": "Remove", "path": "members", "value": [{"value": ana}]},
    ]));
    json_of(app.patch(&group_path, &swap).await, 200).await;
    synced.settle(0).await;
    let ana_there = live(&synced, primavera, "email", "ana@example.com");
    assert_eq!(
        ana_there.fields["status"], "INACTIVE",
        "left scope: disabled"
    );
    assert_eq!(ana_there.counts.updates, 1);
    let bo_there = live(&synced, primavera, "email", "bo@example.com");
    assert_eq!(bo_there.fields["status"], "ACTIVE");
    for name in ["ana", "bo", "cy"] {
        let kept = live(&synced, appgate, "name", name);
        assert_eq!(kept.fields["disabled"], false, "{name} keeps Appgate");
        assert_eq!(
            kept.counts.updates, 0,
            "a Primavera scope change is not Appgate's"
        );
    }

    // Okta's dialect: Ana back in by value path; the same account comes back to life.
    let back = patch(json!([{"op": "add", "path": "members", "value": [{"value": ana}]}]));
    json_of(app.patch(&group_path, &back).await, 200).await;
    synced.settle(0).await;
    let ana_back = live(&synced, primavera, "email", "ana@example.com");
    assert_eq!(ana_back.fields["status"], "ACTIVE");
    assert_eq!(
        (ana_back.counts.creates, ana_back.counts.updates),
        (1, 2),
        "re-entering updates the account the target holds"
    );

    // Cy, never in scope, is deactivated and deleted: Primavera never hears of Cy.
    let deactivate = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    json_of(app.patch(&format!("/Users/{cy}"), &deactivate).await, 200).await;
    assert_eq!(app.delete(&format!("/Users/{cy}")).await.status(), 204);
    synced.settle(0).await;
    assert!(accounts(&synced, primavera, "email", "cy@example.com").is_empty());
    assert_eq!(ledger_rows(&synced, &cy, "primavera"), 0);
    assert!(accounts(&synced, appgate, "name", "cy")
        .iter()
        .all(|a| a.deleted));

    // Deleting the group takes everyone out of scope.
    assert_eq!(app.delete(&group_path).await.status(), 204);
    synced.settle(0).await;
    for email in ["ana@example.com", "bo@example.com"] {
        assert_eq!(
            live(&synced, primavera, "email", email).fields["status"],
            "INACTIVE"
        );
    }
}

#[tokio::test]
async fn an_enterprise_department_scope_with_out_of_scope_delete() {
    let mappings = mappings_with(&[Scope {
        target: "appgate",
        filter: &format!(r#"{ENTERPRISE}:department eq "Network Engineering" and active eq true"#),
        out_of_scope: Some("delete"),
    }]);
    let synced = synced_with(&mappings).await;
    let app = &synced.app;
    let appgate = &targets::appgate::VENDOR;
    let kibo = &targets::kibo::VENDOR;

    let mut body = user("dana");
    body["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    body[ENTERPRISE] = json!({"department": "Sales"});
    let dana = id(&app.create_user(&body).await);
    let path = format!("/Users/{dana}");
    synced.settle(0).await;
    assert!(
        synced.live_accounts(appgate).is_empty(),
        "Sales is out of scope"
    );
    assert_eq!(synced.live_accounts(kibo).len(), 1);

    // Changed into scope by her own attribute (a PATCH on the extension path).
    let move_to = |department: &str| {
        patch(json!([{
            "op": "replace",
            "path": format!("{ENTERPRISE}:department"),
            "value": department,
        }]))
    };
    json_of(app.patch(&path, &move_to("network engineering")).await, 200).await;
    synced.settle(0).await;
    let account = live(&synced, appgate, "name", "dana");
    assert_eq!(account.fields["disabled"], false);

    // And out again: Appgate deletes the account, Kibo keeps the user.
    json_of(app.patch(&path, &move_to("Finance")).await, 200).await;
    synced.settle(0).await;
    assert!(synced.live_accounts(appgate).is_empty());
    let gone = accounts(&synced, appgate, "name", "dana");
    assert!(gone.len() == 1 && gone[0].deleted, "{gone:?}");
    assert_eq!(synced.live_accounts(kibo).len(), 1);

    // Further changes out of scope send nothing more to Appgate: its delete is confirmed.
    let before = synced.sandbox.emulator(appgate).unwrap().requests();
    let rename = patch(json!([{"op": "replace", "path": "name.familyName", "value": "Renamed"}]));
    json_of(app.patch(&path, &rename).await, 200).await;
    synced.settle(0).await;
    assert_eq!(synced.sandbox.emulator(appgate).unwrap().requests(), before);
    assert_eq!(
        live(&synced, kibo, "emailAddress", "dana@example.com").fields["lastName"],
        "Renamed"
    );

    // Back in scope: created anew.
    json_of(app.patch(&path, &move_to("Network Engineering")).await, 200).await;
    synced.settle(0).await;
    let again = live(&synced, appgate, "name", "dana");
    assert_eq!(again.fields["lastName"], "Renamed");
    assert_eq!(again.counts.creates, 1);

    // Deactivated: out of scope by `active eq true`, so deleted rather than disabled.
    let deactivate = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    json_of(app.patch(&path, &deactivate).await, 200).await;
    synced.settle(0).await;
    assert!(synced.live_accounts(appgate).is_empty());
    assert_eq!(
        live(&synced, kibo, "emailAddress", "dana@example.com").fields["isActive"],
        false
    );
}

#[tokio::test]
async fn out_of_scope_ignore_leaves_the_account_as_it_is() {
    let mappings = mappings_with(&[Scope {
        target: "kibo",
        filter: r#"groups[display eq "Kibo Buyers"]"#,
        out_of_scope: Some("ignore"),
    }]);
    let synced = synced_with(&mappings).await;
    let app = &synced.app;
    let kibo = &targets::kibo::VENDOR;
    let eve = id(&app.create_user(&user("eve")).await);
    let buyers = app.create_group(&group("Kibo Buyers", &[&eve])).await;
    synced.settle(0).await;
    let joined = live(&synced, kibo, "emailAddress", "eve@example.com");
    assert_eq!(joined.fields["isActive"], true);

    // Leaving the group: the account stays active and is no longer updated.
    let leave = patch(json!([{"op": "remove", "path": format!("members[value eq \"{eve}\"]")}]));
    json_of(
        app.patch(&format!("/Groups/{}", id(&buyers)), &leave).await,
        200,
    )
    .await;
    let rename = patch(json!([{"op": "replace", "path": "name.familyName", "value": "Left"}]));
    json_of(app.patch(&format!("/Users/{eve}"), &rename).await, 200).await;
    synced.settle(0).await;
    let left = live(&synced, kibo, "emailAddress", "eve@example.com");
    assert_eq!(left.fields["isActive"], true);
    assert_eq!(left.fields["lastName"], "Family");
    assert_eq!(left.counts.updates, joined.counts.updates);
    assert_eq!(
        live(&synced, &targets::appgate::VENDOR, "name", "eve").fields["lastName"],
        "Left"
    );

    // A deactivation still disables it: the stronger of the two policies applies.
    let deactivate = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    json_of(app.patch(&format!("/Users/{eve}"), &deactivate).await, 200).await;
    synced.settle(0).await;
    assert_eq!(
        live(&synced, kibo, "emailAddress", "eve@example.com").fields["isActive"],
        false
    );
}

#[tokio::test]
async fn a_reload_that_adds_a_scope_replans_every_user() {
    let mappings = mappings_with(&[]);
    let synced = synced_with(&mappings).await;
    let app = &synced.app;
    let vikingcloud = &targets::vikingcloud::VENDOR;
    let fay = id(&app.create_user(&user("fay")).await);
    app.create_user(&user("gus")).await;
    app.create_group(&group("VikingCloud Analysts", &[&fay]))
        .await;
    synced.settle(2).await;
    assert_eq!(synced.live_accounts(vikingcloud).len(), 2);

    write_scope(
        mappings.path(),
        &Scope {
            target: "vikingcloud",
            filter: r#"groups[display eq "VikingCloud Analysts"]"#,
            out_of_scope: None,
        },
    );
    assert_eq!(
        synced.admin_ok(Method::POST, "/mappings/reload").await["reloaded"],
        true
    );
    synced.settle(0).await;
    let enabled =
        |email: &str| live(&synced, vikingcloud, "email", email).fields["enabled"].clone();
    assert_eq!(enabled("fay@example.com"), true);
    assert_eq!(
        enabled("gus@example.com"),
        false,
        "out of the new scope: disabled"
    );
}

#[tokio::test]
async fn renaming_a_group_into_and_out_of_the_scope_moves_all_its_members() {
    let mappings = mappings_with(&[Scope {
        target: "primavera",
        filter: r#"groups[display eq "Primavera Schedulers"]"#,
        out_of_scope: None,
    }]);
    let synced = synced_with(&mappings).await;
    let app = &synced.app;
    let primavera = &targets::primavera::VENDOR;
    let hal = id(&app.create_user(&user("hal")).await);
    let ida = id(&app.create_user(&user("ida")).await);
    let planners = app.create_group(&group("Planners", &[&hal, &ida])).await;
    let path = format!("/Groups/{}", id(&planners));
    synced.settle(0).await;
    assert!(synced.live_accounts(primavera).is_empty());

    let rename =
        |name: &str| patch(json!([{"op": "replace", "path": "displayName", "value": name}]));
    json_of(app.patch(&path, &rename("Primavera Schedulers")).await, 200).await;
    synced.settle(0).await;
    for email in ["hal@example.com", "ida@example.com"] {
        assert_eq!(
            live(&synced, primavera, "email", email).fields["status"],
            "ACTIVE"
        );
    }

    json_of(app.patch(&path, &rename("Former Schedulers")).await, 200).await;
    synced.settle(0).await;
    for email in ["hal@example.com", "ida@example.com"] {
        assert_eq!(
            live(&synced, primavera, "email", email).fields["status"],
            "INACTIVE"
        );
    }
}
