//! Taking over accounts that already exist in the targets: an account made by hand (with a
//! password, roles, privileges, tags or licences) is adopted by a SCIM create that carries no
//! password, and neither its password nor what the mapping does not manage is touched, on the
//! first update or later ones. Runs the real bridge against the sandbox with the shipped
//! mappings.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use scim_bridge::clock::SystemClock;
use scim_bridge::sandbox::{self, AccountSnapshot, Sandbox, SandboxConfig};
use scim_bridge::targets;
use scim_bridge::targets::kibo::KiboConfig;
use scim_bridge::targets::vendor::{FirstDelivery, Vendor};

use crate::support::{group, json_of, mappings_dir, object, user, TestApp};

/// The bridge and its sandbox. `lenient_kibo` makes the Kibo emulator and adapter agree that
/// a PUT may leave the password out (a tenant unlike Kibo's reference).
struct Takeover {
    app: TestApp,
    sandbox: Sandbox,
}

impl Takeover {
    async fn spawn(lenient_kibo: bool) -> Takeover {
        Takeover::spawn_with(lenient_kibo, mappings_dir()).await
    }

    async fn spawn_with(lenient_kibo: bool, mappings: std::path::PathBuf) -> Takeover {
        Takeover::spawn_on(lenient_kibo, mappings, None).await
    }

    /// Every target creating first and adopting on 409, whatever its vendor's default.
    async fn spawn_creating_first() -> Takeover {
        Takeover::spawn_on(true, mappings_dir(), Some(FirstDelivery::CreateFirst)).await
    }

    async fn spawn_on(
        lenient_kibo: bool,
        mappings: std::path::PathBuf,
        first_delivery: Option<FirstDelivery>,
    ) -> Takeover {
        let mut cfg = SandboxConfig::ephemeral();
        cfg.emulator_mut(&targets::kibo::VENDOR)
            .unwrap()
            .keeps_password_when_omitted = lenient_kibo;
        let sandbox = sandbox::start(cfg, Arc::new(SystemClock)).await.unwrap();
        let app = bridge_on(&sandbox, lenient_kibo, mappings, first_delivery).await;
        Takeover { app, sandbox }
    }

    async fn admin_user(&self, id: &str) -> Value {
        self.app
            .admin_ok(Method::GET, &format!("/users/{id}"))
            .await
    }

    /// Waits (bounded) until no delivery of the user is pending or retrying; returns the
    /// ledger's view of it.
    async fn settled(&self, id: &str) -> Value {
        self.app.planned().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.admin_user(id).await;
            let busy = status["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["state"] == "pending" || d["state"] == "retrying");
            let all = status["deliveries"].as_array().unwrap().len() == 4;
            if all && !busy {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never settled: {status}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn account(&self, kind: &Vendor, id: &str) -> AccountSnapshot {
        self.sandbox.emulator(kind).unwrap().account(id).unwrap()
    }

    fn live(&self, kind: &Vendor) -> usize {
        crate::support::live_accounts(&self.sandbox, kind).len()
    }
}

/// A bridge with a ledger of its own delivering to `sandbox`.
async fn bridge_on(
    sandbox: &Sandbox,
    lenient_kibo: bool,
    mappings: std::path::PathBuf,
    first_delivery: Option<FirstDelivery>,
) -> TestApp {
    let mut targets = sandbox.targets_config().unwrap();
    for (name, target) in targets.iter_mut() {
        if name != "primavera" {
            target.rate_limit_per_second = 1000;
        }
        target.timeout_ms = 2000;
        if let Some(first) = first_delivery {
            target.first_delivery = first;
        }
        let keys: &mut dyn std::any::Any = target.keys.as_mut();
        if let Some(kibo) = keys.downcast_mut::<KiboConfig>() {
            kibo.password_required_on_update = !lenient_kibo;
        }
    }
    TestApp::spawn_with(move |settings| {
        settings.targets = targets;
        settings.fanout.mappings_dir = mappings;
        settings.fanout.poll_ms = 20;
        settings.fanout.backoff_base_ms = 10;
        settings.fanout.backoff_cap_ms = 200;
    })
    .await
}

fn delivery<'a>(status: &'a Value, target: &str) -> &'a Value {
    status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["desired"]["target"] == target)
        .unwrap()
}

fn adoption<'a>(status: &'a Value, target: &str) -> Option<&'a Value> {
    status["adoptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == target)
}

fn names(list: &Value, key: &str) -> Vec<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[key].clone())
        .collect()
}

/// Accounts made by hand in all four targets for "ana", each with a password (where the
/// vendor has one) and entries the mapping does not manage. Returns their ids by target.
fn made_by_hand(sandbox: &Sandbox) -> [String; 4] {
    let appgate = sandbox
        .emulator(&targets::appgate::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "name": "ana", "firstName": "Hand", "lastName": "Made", "password": "hand-set",
            "tags": ["vpn-admins"], "email": "ana@example.com"
        })));
    let vikingcloud = sandbox
        .emulator(&targets::vikingcloud::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "userKey": {"username": "ana", "authenticator": "local"}, "firstName": "Hand",
            "lastName": "Made", "email": "ana@example.com", "password": "hand-set",
            "roles": [{"name": "BILLING"}, {"name": "AUDITOR"}], "privileges": [{"name": "EXPORT"}]
        })));
    let kibo = sandbox
        .emulator(&targets::kibo::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "emailAddress": "ana@example.com", "firstName": "Hand", "lastName": "Made",
            "password": "hand-set", "roles": [{"roleId": 1, "roleName": "Admin"}]
        })));
    let primavera = sandbox
        .emulator(&targets::primavera::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "email": "ana@example.com", "firstName": "Hand", "lastName": "Made",
            "userProducts": [{"productName": "TASKS"}]
        })));
    [appgate, vikingcloud, kibo, primavera]
}

#[tokio::test]
async fn accounts_made_by_hand_are_adopted_and_keep_their_password_and_unmanaged_entries() {
    let bridge = Takeover::spawn(true).await;
    let [appgate, vikingcloud, kibo, primavera] = made_by_hand(&bridge.sandbox);

    // Entra ID style: no password. Ana is an analyst, a catalog manager and a task user.
    let ana = bridge.app.create_user(&user("ana")).await;
    let id = ana["id"].as_str().unwrap();
    for name in [
        "VikingCloud Analysts",
        "Kibo Catalog Managers",
        "Primavera Task Users",
    ] {
        bridge.app.create_group(&group(name, &[id])).await;
    }
    let status = bridge.settled(id).await;
    for target in ["appgate", "vikingcloud", "kibo", "primavera"] {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
        let adopted = adoption(&status, target).unwrap_or_else(|| panic!("{target}: {status}"));
        let changed = adopted["changed"].as_array().unwrap();
        assert!(changed.contains(&json!("firstName")), "{target}: {adopted}");
        assert!(!changed.contains(&json!("password")), "{target}: {adopted}");
    }
    assert_eq!(adoption(&status, "kibo").unwrap()["remote_id"], json!(kibo));

    let check = |round: &str| {
        // Adopted, not duplicated: still one account each, never created through the API.
        for kind in targets::VENDORS {
            assert_eq!(bridge.live(kind), 1, "{round}: {kind:?}");
        }
        let appgate = bridge.account(&targets::appgate::VENDOR, &appgate);
        let vikingcloud = bridge.account(&targets::vikingcloud::VENDOR, &vikingcloud);
        let kibo = bridge.account(&targets::kibo::VENDOR, &kibo);
        let primavera = bridge.account(&targets::primavera::VENDOR, &primavera);
        for account in [&appgate, &vikingcloud, &kibo, &primavera] {
            assert_eq!(account.counts.creates, 0, "{round}: {account:?}");
        }
        // The password was set once, by hand, and is still the one set then.
        for (kind, account) in [
            (&targets::appgate::VENDOR, &appgate),
            (&targets::vikingcloud::VENDOR, &vikingcloud),
            (&targets::kibo::VENDOR, &kibo),
        ] {
            assert_eq!(
                account.secret_writes,
                [("password".to_owned(), 1)].into(),
                "{round}: {kind:?}"
            );
            let held = bridge
                .sandbox
                .emulator(kind)
                .unwrap()
                .secret(&account.id, "password");
            assert_eq!(held.as_deref(), Some("hand-set"), "{round}: {kind:?}");
        }
        // Entries given by hand stay beside the mapping's.
        assert_eq!(
            appgate.fields["tags"],
            json!(["vpn-admins", "scim-bridge"]),
            "{round}"
        );
        assert_eq!(
            names(&vikingcloud.fields["roles"], "name"),
            [json!("BILLING"), json!("ANALYST")],
            "{round}: AUDITOR is the mapping's and Ana is no auditor"
        );
        assert_eq!(
            vikingcloud.fields["privileges"],
            json!([{"name": "EXPORT"}]),
            "{round}"
        );
        assert_eq!(
            names(&kibo.fields["roles"], "roleId"),
            [json!(1), json!(2)],
            "{round}"
        );
        assert_eq!(
            names(&primavera.fields["userProducts"], "productName"),
            [json!("TASKS")],
            "{round}"
        );
        [appgate, vikingcloud, kibo, primavera]
    };
    let accounts = check("first update");
    for account in &accounts {
        assert_eq!(account.fields["firstName"], "Given", "{account:?}");
    }

    // Later updates: the managed fields follow the identity provider, the rest stays.
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Ana"}]
    });
    json_of(
        bridge.app.patch(&format!("/Users/{id}"), &rename).await,
        200,
    )
    .await;
    let status = bridge.settled(id).await;
    for target in ["appgate", "vikingcloud", "kibo", "primavera"] {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
    }
    for account in check("later update") {
        assert_eq!(account.fields["firstName"], "Ana", "{account:?}");
        assert!(account.counts.updates >= 2, "{account:?}");
    }
}

#[tokio::test]
async fn a_kibo_tenant_that_wants_the_password_on_every_put_holds_the_update_instead() {
    let bridge = Takeover::spawn(false).await;
    let [_, _, kibo, _] = made_by_hand(&bridge.sandbox);
    let ana = bridge.app.create_user(&user("ana")).await;
    let status = bridge.settled(ana["id"].as_str().unwrap()).await;
    let held = delivery(&status, "kibo");
    assert_eq!(held["state"], "rejected", "{held}");
    assert!(
        held["last_status"].is_null(),
        "decided before sending: {held}"
    );
    let reason = held["last_error"].as_str().unwrap();
    assert!(
        reason.starts_with("needs the user's password: the IdP sent none"),
        "{reason}"
    );
    assert!(adoption(&status, "kibo").is_none(), "{status}");
    let account = bridge.account(&targets::kibo::VENDOR, &kibo);
    assert_eq!(account.counts.updates, 0, "{account:?}");
    assert_eq!(account.secret_writes, [("password".to_owned(), 1)].into());
    assert_eq!(
        bridge
            .sandbox
            .emulator(&targets::kibo::VENDOR)
            .unwrap()
            .secret(&kibo, "password")
            .as_deref(),
        Some("hand-set")
    );
    // The other targets took the account over as usual.
    for target in ["appgate", "vikingcloud", "primavera"] {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
    }
}

#[tokio::test]
async fn an_appgate_name_in_another_case_is_adopted_not_duplicated_or_rejected() {
    let bridge = Takeover::spawn(true).await;
    let existing = bridge
        .sandbox
        .emulator(&targets::appgate::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "name": "Ana@Example.com", "firstName": "Hand", "lastName": "Made",
            "password": "hand-set"
        })));
    let ana = bridge.app.create_user(&user("ana@example.com")).await;
    let status = bridge.settled(ana["id"].as_str().unwrap()).await;
    assert_eq!(
        delivery(&status, "appgate")["state"],
        "delivered",
        "{status}"
    );
    assert_eq!(
        adoption(&status, "appgate").unwrap()["remote_id"],
        json!(existing)
    );
    assert_eq!(bridge.live(&targets::appgate::VENDOR), 1);
    let account = bridge.account(&targets::appgate::VENDOR, &existing);
    assert_eq!(account.counts.creates, 0);
    assert_eq!(account.secret_writes, [("password".to_owned(), 1)].into());
}

#[tokio::test]
async fn new_users_without_a_password_are_created_where_the_vendor_allows_it() {
    let bridge = Takeover::spawn(false).await;
    let bo = bridge.app.create_user(&user("bo")).await;
    let status = bridge.settled(bo["id"].as_str().unwrap()).await;
    assert!(
        status["adoptions"].as_array().unwrap().is_empty(),
        "{status}"
    );
    for (kind, target) in [
        (&targets::appgate::VENDOR, "appgate"),
        (&targets::vikingcloud::VENDOR, "vikingcloud"),
        (&targets::kibo::VENDOR, "kibo"),
        (&targets::primavera::VENDOR, "primavera"),
    ] {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
        let accounts = bridge.sandbox.emulator(kind).unwrap().accounts();
        assert_eq!(accounts.len(), 1, "{target}");
        let writes = accounts[0].secret_writes.get("password").copied();
        // Only Kibo cannot create an admin user without one: it gets a random password.
        let expected = (kind == &targets::kibo::VENDOR).then_some(1);
        assert_eq!(writes, expected, "{target}: {:?}", accounts[0]);
    }
    // Kibo wants a password on every PUT, so the one made up for the account the bridge
    // created is kept for it (and only it), and its updates are not held.
    let id = bo["id"].as_str().unwrap();
    let made_up = bridge
        .sandbox
        .emulator(&targets::kibo::VENDOR)
        .unwrap()
        .accounts()[0]
        .id
        .clone();
    let first = bridge
        .sandbox
        .emulator(&targets::kibo::VENDOR)
        .unwrap()
        .secret(&made_up, "password");
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Bo"}]
    });
    json_of(
        bridge.app.patch(&format!("/Users/{id}"), &rename).await,
        200,
    )
    .await;
    let status = bridge.settled(id).await;
    assert_eq!(delivery(&status, "kibo")["state"], "delivered", "{status}");
    let account = bridge.account(&targets::kibo::VENDOR, &made_up);
    assert_eq!(account.fields["firstName"], "Bo");
    assert_eq!(
        bridge
            .sandbox
            .emulator(&targets::kibo::VENDOR)
            .unwrap()
            .secret(&made_up, "password"),
        first
    );
}

#[tokio::test]
async fn a_field_not_managed_keeps_the_adopted_accounts_value_even_through_a_full_put() {
    // The shipped Appgate mapping, with its notes left to Appgate on adopted accounts.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(mappings_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "edits made here are overwritten.\" }",
            "edits made here are overwritten.\", managed = false }",
        );
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let bridge = Takeover::spawn_with(true, dir.path().to_owned()).await;
    let held = bridge
        .sandbox
        .emulator(&targets::appgate::VENDOR)
        .unwrap()
        .insert_account(object(json!({
            "name": "ana", "firstName": "Hand", "lastName": "Made", "notes": "Contractor until May"
        })));
    let ana = bridge.app.create_user(&user("ana")).await;
    let id = ana["id"].as_str().unwrap();
    bridge.settled(id).await;
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Ana"}]
    });
    json_of(
        bridge.app.patch(&format!("/Users/{id}"), &rename).await,
        200,
    )
    .await;
    let status = bridge.settled(id).await;
    assert_eq!(
        delivery(&status, "appgate")["state"],
        "delivered",
        "{status}"
    );
    let account = bridge.account(&targets::appgate::VENDOR, &held);
    assert_eq!(account.fields["firstName"], "Ana");
    assert_eq!(account.counts.updates, 2, "{account:?}");
    assert_eq!(
        account.fields["notes"], "Contractor until May",
        "{account:?}"
    );
    // A user the bridge creates gets the mapping's notes.
    let bo = bridge.app.create_user(&user("bo")).await;
    bridge.settled(bo["id"].as_str().unwrap()).await;
    let created = bridge
        .sandbox
        .emulator(&targets::appgate::VENDOR)
        .unwrap()
        .accounts()
        .into_iter()
        .find(|a| a.fields["name"] == "bo")
        .unwrap();
    assert!(
        created.fields["notes"]
            .as_str()
            .unwrap()
            .starts_with("Provisioned by scim-bridge"),
        "{created:?}"
    );
}

/// Requests each emulator received apart from logins, in `targets::VENDORS` order.
fn requests(sandbox: &Sandbox) -> Vec<u64> {
    targets::VENDORS
        .iter()
        .map(|kind| {
            let emulator = sandbox.emulator(kind).unwrap();
            emulator.requests() - emulator.logins()
        })
        .collect()
}

fn since(before: &[u64], sandbox: &Sandbox) -> Vec<u64> {
    requests(sandbox)
        .iter()
        .zip(before)
        .map(|(now, then)| now - then)
        .collect()
}

#[tokio::test]
async fn creating_first_costs_one_request_per_new_account_and_adopts_on_409_without_a_duplicate() {
    let bridge = Takeover::spawn_creating_first().await;
    let kinds: Vec<&str> = targets::VENDORS.iter().map(|kind| kind.kind).collect();

    // A new account: the create alone.
    let before = requests(&bridge.sandbox);
    let bob = bridge.app.create_user(&user("bob")).await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    let status = bridge.settled(&bob_id).await;
    assert_eq!(since(&before, &bridge.sandbox), [1, 1, 1, 1], "{kinds:?}");
    assert!(
        status["adoptions"].as_array().unwrap().is_empty(),
        "{status}"
    );

    // An account made by hand: the create meets a 409, the look-up finds the account, and
    // it is adopted and updated where it differs, never duplicated.
    let [appgate, _, kibo, _] = made_by_hand(&bridge.sandbox);
    let before = requests(&bridge.sandbox);
    let ana = bridge.app.create_user(&user("ana")).await;
    let status = bridge.settled(ana["id"].as_str().unwrap()).await;
    assert_eq!(since(&before, &bridge.sandbox), [3, 3, 3, 3], "{kinds:?}");
    for target in kinds.iter() {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
        let adopted = adoption(&status, target).unwrap_or_else(|| panic!("{target}: {status}"));
        assert!(
            adopted["changed"]
                .as_array()
                .unwrap()
                .contains(&json!("firstName")),
            "{target}: {adopted}"
        );
    }
    assert_eq!(
        adoption(&status, "appgate").unwrap()["remote_id"],
        json!(appgate)
    );
    assert_eq!(adoption(&status, "kibo").unwrap()["remote_id"], json!(kibo));
    for kind in targets::VENDORS {
        assert_eq!(bridge.live(kind), 2, "{kind:?}: bob and ana, no duplicate");
    }
    let appgate_account = bridge.account(&targets::appgate::VENDOR, &appgate);
    assert_eq!(
        appgate_account.fields["tags"],
        json!(["vpn-admins", "scim-bridge"])
    );
    assert_eq!(appgate_account.counts.creates, 0);

    // A change to a linked account: one write each. Appgate (whose mapping sets tags) and
    // VikingCloud (roles, privileges) read the account first, since their write replaces
    // what was given by hand since the last one; Primavera is not read back after its 204.
    let before = requests(&bridge.sandbox);
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Anna"}]
    });
    let ana_id = ana["id"].as_str().unwrap();
    json_of(
        bridge.app.patch(&format!("/Users/{ana_id}"), &rename).await,
        200,
    )
    .await;
    bridge.settled(ana_id).await;
    assert_eq!(since(&before, &bridge.sandbox), [2, 2, 1, 1], "{kinds:?}");
    let appgate_account = bridge.account(&targets::appgate::VENDOR, &appgate);
    assert_eq!(appgate_account.fields["firstName"], "Anna");
    assert_eq!(
        appgate_account.fields["tags"],
        json!(["vpn-admins", "scim-bridge"])
    );

    // A bridge whose ledger lost the link (a new database, or a crash between the create
    // and its record) meets bob's accounts as it is: it links them, and writes nothing
    // where they already hold what it would send.
    let second = bridge_on(
        &bridge.sandbox,
        true,
        mappings_dir(),
        Some(FirstDelivery::CreateFirst),
    )
    .await;
    let updates = |sandbox: &Sandbox| -> Vec<u64> {
        targets::VENDORS
            .iter()
            .map(|kind| {
                let emulator = sandbox.emulator(kind).unwrap();
                emulator
                    .accounts()
                    .iter()
                    .map(|a| u64::from(a.counts.updates))
                    .sum()
            })
            .collect()
    };
    let (before, updates_before) = (requests(&bridge.sandbox), updates(&bridge.sandbox));
    let bob = second.create_user(&user("bob")).await;
    let again = Takeover {
        app: second,
        sandbox: bridge.sandbox,
    };
    let status = again.settled(bob["id"].as_str().unwrap()).await;
    for target in kinds.iter() {
        assert_eq!(delivery(&status, target)["state"], "delivered", "{status}");
    }
    // Create (409), look-up, and one update: every payload carries a list the target merges
    // with hand-given entries (Appgate tags, roles, licences), which cannot be seen to be held
    // as sent, so the adopted account is written once rather than left short of a grant.
    assert_eq!(since(&before, &again.sandbox), [3, 3, 3, 3], "{kinds:?}");
    let updated: Vec<u64> = updates(&again.sandbox)
        .iter()
        .zip(&updates_before)
        .map(|(now, then)| now - then)
        .collect();
    assert_eq!(updated, [1, 1, 1, 1], "{kinds:?}");
    for kind in targets::VENDORS {
        assert_eq!(again.live(kind), 2, "{kind:?}");
    }
}

#[tokio::test]
async fn an_initial_load_reads_the_listing_targets_once_and_costs_one_request_per_new_account() {
    let bridge = Takeover::spawn(true).await;
    let kinds: Vec<&str> = targets::VENDORS.iter().map(|kind| kind.kind).collect();
    let [_, _, kibo, primavera] = made_by_hand(&bridge.sandbox);
    // Kibo and Primavera look new users up in a listing once enough of them wait: held
    // while the users are written, so that all of them wait at once.
    for target in ["kibo", "primavera"] {
        let path = format!("/targets/{target}/pause");
        bridge.app.admin_ok(Method::POST, &path).await;
    }
    let before = requests(&bridge.sandbox);
    let mut ids = Vec::new();
    for n in 0..54 {
        let created = bridge.app.create_user(&user(&format!("load{n}"))).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let ana = bridge.app.create_user(&user("ana")).await;
    ids.push(ana["id"].as_str().unwrap().to_owned());
    bridge.app.planned().await;
    for target in ["kibo", "primavera"] {
        let path = format!("/targets/{target}/resume");
        bridge.app.admin_ok(Method::POST, &path).await;
    }
    for id in &ids {
        bridge.settled(id).await;
    }
    // Appgate and VikingCloud create first: 54 creates, and ana's create meets a 409, is
    // looked up and adopted (updated where it differs). Kibo and Primavera read one page of
    // accounts, create the 54 it lacks at once, and look ana up alone before adopting her.
    assert_eq!(
        since(&before, &bridge.sandbox),
        [54 + 3, 54 + 3, 1 + 54 + 2, 1 + 54 + 2],
        "{kinds:?}"
    );
    let status = bridge.admin_user(&ids[54]).await;
    assert_eq!(adoption(&status, "kibo").unwrap()["remote_id"], json!(kibo));
    assert_eq!(
        adoption(&status, "primavera").unwrap()["remote_id"],
        json!(primavera)
    );
    for kind in targets::VENDORS {
        assert_eq!(
            bridge.live(kind),
            55,
            "{kind:?}: no duplicate of ana's account"
        );
    }
    // The admin API shows each listing: when it was read, what it held, and until when new
    // users are created without a look-up. Targets that create first have none.
    let listings = bridge.app.admin_ok(Method::GET, "/targets").await["listings"].clone();
    let names: Vec<&String> = listings.as_object().unwrap().keys().collect();
    assert_eq!(names, ["kibo", "primavera"], "{listings}");
    for target in ["kibo", "primavera"] {
        let listing = &listings[target];
        assert_eq!(listing["state"], "read", "{listing}");
        assert_eq!(
            listing["accounts"], 1,
            "ana's account, made by hand: {listing}"
        );
        let read_at = listing["read_at"].as_i64().unwrap();
        assert_eq!(listing["fresh_until"].as_i64(), Some(read_at + 300_000));
    }
}
