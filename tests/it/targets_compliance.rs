//! The compliance suite: one generic run per adapter against its emulator, checking after
//! every call what the emulator actually holds.

use std::net::TcpListener;
use std::time::Duration;

use scim_bridge::sandbox::{AccountSnapshot, EmulatorHandle, Faults};
use scim_bridge::targets;
use scim_bridge::targets::vendor::Vendor;
use scim_bridge::targets::{Payload, RemoteAccount, TargetError};
use serde_json::{json, Value};

use crate::support::{object, Env};

/// What the suite needs to know about one vendor.
struct Case {
    kind: &'static Vendor,
    /// A complete payload for the person called `who`.
    user: fn(&str) -> Payload,
    /// The natural key of an account, read from the fields the emulator holds.
    key: fn(&Payload) -> Option<&str>,
    /// The field `user` sets to "Lima" and the update changes.
    last_name: &'static str,
    /// Whether the fields the emulator holds say "disabled".
    disabled: fn(&Payload) -> bool,
    /// A payload the API refuses, the status, and a piece of the API's own message.
    invalid: fn() -> (Payload, u16, &'static str),
    /// The wait an adapter suggests after a 429 without `Retry-After`.
    bare_429_wait: Option<Duration>,
}

fn appgate_case() -> Case {
    Case {
        kind: &targets::appgate::VENDOR,
        user: |who| {
            object(json!({
                "name": who, "firstName": "Ana", "lastName": "Lima",
                "password": "first-Passw0rd", "email": format!("{who}@example.com"),
                "phone": "", "tags": ["bridge"], "disabled": false
            }))
        },
        key: |fields| fields.get("name").and_then(Value::as_str),
        last_name: "lastName",
        disabled: |fields| fields.get("disabled") == Some(&json!(true)),
        invalid: || {
            let payload =
                object(json!({"name": "no-last-name", "firstName": "A", "password": "p"}));
            (payload, 422, "lastName: may not be null")
        },
        bare_429_wait: None,
    }
}

fn vikingcloud_case() -> Case {
    Case {
        kind: &targets::vikingcloud::VENDOR,
        user: |who| {
            object(json!({
                "userKey": {"username": who, "authenticator": "local"},
                "firstName": "Ana", "lastName": "Lima", "password": "first-Passw0rd",
                "email": format!("{who}@example.com"), "enabled": true,
                "primaryPhone": "5550100", "primaryPhoneCountryCode": "1"
            }))
        },
        key: |fields| fields.get("userKey")?.get("username")?.as_str(),
        last_name: "lastName",
        disabled: |fields| fields.get("enabled") == Some(&json!(false)),
        invalid: || {
            let payload = object(json!({"userKey": {"username": "no-country"},
                                        "primaryPhone": "5550100"}));
            (payload, 400, "primaryPhoneCountryCode is mandatory")
        },
        bare_429_wait: None,
    }
}

fn kibo_case() -> Case {
    Case {
        kind: &targets::kibo::VENDOR,
        user: |who| {
            object(json!({
                "emailAddress": format!("{who}@example.com"), "userName": who,
                "firstName": "Ana", "lastName": "Lima", "password": "first-Passw0rd",
                "isActive": true
            }))
        },
        key: |fields| fields.get("emailAddress").and_then(Value::as_str),
        last_name: "lastName",
        disabled: |fields| fields.get("isActive") == Some(&json!(false)),
        invalid: || {
            let payload = object(json!({"emailAddress": "no-password@example.com",
                                        "firstName": "A", "lastName": "B"}));
            (payload, 400, "password is required")
        },
        bare_429_wait: None,
    }
}

fn primavera_case() -> Case {
    Case {
        kind: &targets::primavera::VENDOR,
        user: |who| {
            object(json!({
                "email": format!("{who}@example.com"), "firstName": "Ana", "lastName": "Lima",
                "title": "Planner", "status": "ACTIVE", "userLocale": "en",
                "userProducts": [{"productName": "TASKS"}, {"productName": "SCHEDULE"}]
            }))
        },
        key: |fields| fields.get("email").and_then(Value::as_str),
        last_name: "lastName",
        disabled: |fields| fields.get("status") == Some(&json!("INACTIVE")),
        invalid: || {
            let payload = object(json!({"email": "long-title@example.com", "firstName": "A",
                                        "lastName": "B", "title": "x".repeat(26)}));
            (payload, 400, "title exceeds the maximum length of 25")
        },
        bare_429_wait: Some(Duration::from_secs(1)),
    }
}

/// The value of the natural key `user(who)` carries, as the emulator stores it.
fn key_value(case: &Case, who: &str) -> String {
    let user = (case.user)(who);
    (case.key)(&user)
        .expect("the case's user carries its natural key")
        .to_owned()
}

fn live(case: &Case, emulator: &EmulatorHandle, who: &str) -> Vec<AccountSnapshot> {
    let wanted = key_value(case, who);
    emulator
        .accounts()
        .into_iter()
        .filter(|account| !account.deleted && (case.key)(&account.fields) == Some(wanted.as_str()))
        .collect()
}

fn only(case: &Case, emulator: &EmulatorHandle, who: &str) -> AccountSnapshot {
    let mut accounts = live(case, emulator, who);
    assert_eq!(
        accounts.len(),
        1,
        "{:?} holds {accounts:?} for {who}",
        case.kind
    );
    accounts.remove(0)
}

fn renamed(case: &Case, mut payload: Payload, last_name: &str) -> Payload {
    payload.insert(case.last_name.to_owned(), json!(last_name));
    payload
}

fn assert_retryable<T: std::fmt::Debug>(
    result: Result<T, TargetError>,
    reason_part: &str,
    wait: Option<Duration>,
) {
    match result {
        Err(TargetError::Retryable {
            reason,
            retry_after,
            ..
        }) => {
            assert!(
                reason.contains(reason_part),
                "reason {reason:?} lacks {reason_part:?}"
            );
            assert_eq!(retry_after, wait, "retry-after for {reason:?}");
        }
        other => panic!("expected retryable ({reason_part}), got {other:?}"),
    }
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn run(case: Case) {
    let env = Env::start().await;
    let emulator = env.emulator(case.kind).clone();
    let target = env.target(case.kind, |_| {});
    let ana = (case.user)("ana");

    // Create: nothing to adopt, so one account arrives, created once.
    assert_eq!(target.find(&ana).await.unwrap(), None);
    let created: RemoteAccount = target.create(&ana).await.unwrap();
    let held = only(&case, &emulator, "ana");
    assert_eq!((held.counts.creates, held.counts.updates), (1, 0));
    assert_eq!(held.fields[case.last_name], json!("Lima"));
    let read = target.read(&created.id).await.unwrap().unwrap();
    assert_eq!(
        (case.key)(&read.fields),
        Some(key_value(&case, "ana").as_str())
    );
    assert_eq!(
        target.find(&ana).await.unwrap().map(|found| found.id),
        Some(created.id.clone())
    );
    env.next_second();

    // Update: the same account changes in place.
    let updated = target
        .update(&created.id, &renamed(&case, ana.clone(), "Souza"))
        .await
        .unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.fields[case.last_name], json!("Souza"));
    let held = only(&case, &emulator, "ana");
    assert_eq!((held.counts.creates, held.counts.updates), (1, 1));
    assert_eq!(held.fields[case.last_name], json!("Souza"));
    env.next_second();

    // Adopt: an account someone made by hand is found and updated, not duplicated.
    let bo = (case.user)("bo");
    emulator.insert_account(bo.clone());
    let adopted = target
        .find(&bo)
        .await
        .unwrap()
        .expect("hand-made account found");
    target
        .update(&adopted.id, &renamed(&case, bo.clone(), "Adopted"))
        .await
        .unwrap();
    let held = only(&case, &emulator, "bo");
    assert_eq!((held.counts.creates, held.counts.updates), (0, 1));
    assert_eq!(held.fields[case.last_name], json!("Adopted"));
    env.next_second();

    // Disable: the account stays, login refused.
    let disabled = target
        .disable(&created.id, &renamed(&case, ana.clone(), "Souza"))
        .await
        .unwrap();
    assert!((case.disabled)(&disabled.fields), "{:?}", disabled.fields);
    let held = only(&case, &emulator, "ana");
    assert!((case.disabled)(&held.fields), "{:?}", held.fields);
    assert_eq!(held.counts.updates, 2);
    env.next_second();

    // Token expiry: the cached token is renewed before it runs out, with no 401 on the way.
    let logins = emulator.logins();
    env.clock.advance(Duration::from_secs(3_600));
    assert!(target.read(&created.id).await.unwrap().is_some());
    assert_eq!(emulator.logins(), logins + 1);

    // 401: a token the target forgot gets one fresh login and the call goes through.
    emulator.expire_tokens();
    let requests = emulator.requests();
    assert!(target.read(&created.id).await.unwrap().is_some());
    assert_eq!(emulator.logins(), logins + 2);
    assert_eq!(
        emulator.requests(),
        requests + 3,
        "refused call, login, retried call"
    );
    env.next_second();

    // 429 with and without Retry-After: retryable, nothing written.
    let cy = (case.user)("cy");
    emulator.set_faults(Faults {
        throttle: true,
        retry_after: Some("7".into()),
        ..Faults::default()
    });
    assert_retryable(
        target.create(&cy).await,
        "429",
        Some(Duration::from_secs(7)),
    );
    emulator.set_faults(Faults {
        throttle: true,
        ..Faults::default()
    });
    assert_retryable(target.create(&cy).await, "429", case.bare_429_wait);
    env.next_second();

    // 5xx: retryable, with the Retry-After a 503 names.
    emulator.set_faults(Faults {
        server_error_share: 1.0,
        retry_after: Some("3".into()),
        ..Faults::default()
    });
    match target.create(&cy).await {
        Err(TargetError::Retryable {
            status,
            reason,
            retry_after,
        }) => {
            assert!(
                reason.starts_with("500") || reason.starts_with("503"),
                "{reason}"
            );
            assert_eq!(status, reason[..3].parse().ok(), "{reason}");
            let expected = reason.starts_with("503").then(|| Duration::from_secs(3));
            assert_eq!(retry_after, expected);
        }
        other => panic!("expected a retryable 5xx, got {other:?}"),
    }
    emulator.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    assert_retryable(
        target.find(&cy).await,
        "503: sandbox: the target is down",
        None,
    );

    // A broken answer (the connection drops mid-body) is retryable.
    emulator.set_faults(Faults {
        drop_connection: true,
        ..Faults::default()
    });
    assert_retryable(target.find(&cy).await, "broken response", None);
    emulator.set_faults(Faults::default());
    assert!(
        live(&case, &emulator, "cy").is_empty(),
        "no fault let a write through"
    );
    env.next_second();

    // 4xx: rejected, with the target's own words.
    let (invalid, status, words) = (case.invalid)();
    match target.create(&invalid).await {
        Err(TargetError::Rejected {
            status: got,
            message,
        }) => {
            assert_eq!(got, status);
            assert!(message.contains(words), "{message:?} lacks {words:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    env.next_second();

    // Timeout: an answer slower than the adapter's timeout is retryable.
    let impatient = env.target(case.kind, |cfg| cfg.timeout_ms = 100);
    emulator.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    assert_retryable(impatient.find(&cy).await, "timed out", None);
    emulator.set_faults(Faults::default());

    // Connection refused: retryable.
    let unreachable = env.target(case.kind, |cfg| {
        cfg.base_url = cfg.base_url.replace(
            &emulator.addr().port().to_string(),
            &closed_port().to_string(),
        );
    });
    assert_retryable(unreachable.find(&cy).await, "", None);
    env.next_second();

    // Delete: gone from the API, its delete counted; deleting again is not an error.
    target.delete(&created.id).await.unwrap();
    assert!(live(&case, &emulator, "ana").is_empty());
    let deleted: Vec<_> = emulator
        .accounts()
        .into_iter()
        .filter(|account| account.deleted)
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].counts.deletes, 1);
    assert_eq!(target.read(&created.id).await.unwrap(), None);
    target.delete(&created.id).await.unwrap();
    assert_eq!(target.find(&ana).await.unwrap(), None);

    env.sandbox.stop().await;
}

#[tokio::test]
async fn appgate() {
    run(appgate_case()).await;
}

#[tokio::test]
async fn vikingcloud() {
    run(vikingcloud_case()).await;
}

#[tokio::test]
async fn kibo() {
    run(kibo_case()).await;
}

#[tokio::test]
async fn primavera() {
    run(primavera_case()).await;
}

/// The role ids the Kibo emulator holds for an account.
fn kibo_roles(emulator: &EmulatorHandle, id: &str) -> Vec<i64> {
    let account = emulator.account(id).unwrap();
    role_ids(&account.fields)
}

fn role_ids(fields: &Payload) -> Vec<i64> {
    fields["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["roleId"].as_i64().unwrap())
        .collect()
}

/// Kibo roles: granted entries are assigned, `action: DELETE` entries removed if held, and a
/// role the payload does not name (assigned by hand in Kibo) is left alone.
#[tokio::test]
async fn kibo_roles_are_assigned_and_removed_by_their_own_calls() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::kibo::VENDOR).clone();
    let target = env.target(&targets::kibo::VENDOR, |_| {});
    let with_roles = |who: &str, roles: Value| {
        let mut payload = (kibo_case().user)(who);
        payload.insert("roles".to_owned(), roles);
        payload
    };
    let catalog_only = json!([{"roleId": 2}, {"roleId": 3, "action": "DELETE"}]);
    let orders_only = json!([{"roleId": 2, "action": "DELETE"}, {"roleId": 3}]);
    let neither = json!([{"roleId": 2, "action": "DELETE"}, {"roleId": 3, "action": "DELETE"}]);

    // Create: the account body carries no roles; the role call follows, and the account
    // returned shows it.
    let created = target
        .create(&with_roles("ana", catalog_only.clone()))
        .await
        .unwrap();
    assert_eq!(role_ids(&created.fields), [2]);
    assert_eq!(kibo_roles(&emulator, &created.id), [2]);
    let held = emulator.account(&created.id).unwrap();
    assert_eq!((held.counts.creates, held.counts.role_calls), (1, 1));

    // Update: one role swapped for the other.
    let updated = target
        .update(&created.id, &with_roles("ana", orders_only.clone()))
        .await
        .unwrap();
    assert_eq!(role_ids(&updated.fields), [3]);
    assert_eq!(emulator.account(&created.id).unwrap().counts.role_calls, 3);

    // Nothing to change: no role call and no read-back.
    let requests = emulator.requests();
    target
        .update(&created.id, &with_roles("ana", orders_only.clone()))
        .await
        .unwrap();
    assert_eq!(emulator.requests(), requests + 1, "only the PUT");
    assert_eq!(emulator.account(&created.id).unwrap().counts.role_calls, 3);

    // A payload without `roles` (a mapping that does not manage them) leaves them alone.
    target
        .update(&created.id, &(kibo_case().user)("ana"))
        .await
        .unwrap();
    assert_eq!(kibo_roles(&emulator, &created.id), [3]);

    // Disable: the account is deactivated and its managed roles follow the payload.
    let disabled = target
        .disable(&created.id, &with_roles("ana", neither.clone()))
        .await
        .unwrap();
    assert_eq!(disabled.fields["isActive"], json!(false));
    assert!(kibo_roles(&emulator, &created.id).is_empty());

    // Hand-assigned roles survive: Admin (1) and Order Manager (3) were given in Kibo; the
    // mapping manages 2 and 3, so 3 goes (the user is not an order manager) and 1 stays.
    let mut bo = (kibo_case().user)("bo");
    bo.insert(
        "roles".to_owned(),
        json!([{"roleId": 1, "roleName": "Admin"}, {"roleId": 3, "roleName": "Order Manager"}]),
    );
    emulator.insert_account(bo);
    let adopted = target
        .find(&with_roles("bo", catalog_only.clone()))
        .await
        .unwrap()
        .expect("hand-made account found");
    target
        .update(&adopted.id, &with_roles("bo", catalog_only.clone()))
        .await
        .unwrap();
    assert_eq!(kibo_roles(&emulator, &adopted.id), [1, 2]);

    // 401 on the way: the shared session logs in again once and the calls go through.
    emulator.expire_tokens();
    let logins = emulator.logins();
    target
        .update(&adopted.id, &with_roles("bo", orders_only.clone()))
        .await
        .unwrap();
    assert_eq!(emulator.logins(), logins + 1);
    assert_eq!(kibo_roles(&emulator, &adopted.id), [1, 3]);

    // A role Kibo does not know is rejected with Kibo's words.
    match target
        .update(&adopted.id, &with_roles("bo", json!([{"roleId": 99}])))
        .await
    {
        Err(TargetError::Rejected { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("roleId 99"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // A role entry the adapter cannot read is refused before anything is sent.
    let requests = emulator.requests();
    match target
        .create(&with_roles("cy", json!([{"name": "Admin"}])))
        .await
    {
        Err(TargetError::Unusable { message }) => {
            assert!(message.contains("roleId"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(emulator.requests(), requests);

    // 429 and 5xx on the way are retryable, as for every other call.
    emulator.set_faults(Faults {
        throttle: true,
        retry_after: Some("2".into()),
        ..Faults::default()
    });
    assert_retryable(
        target
            .update(&adopted.id, &with_roles("bo", catalog_only.clone()))
            .await,
        "429",
        Some(Duration::from_secs(2)),
    );
    emulator.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        target
            .update(&adopted.id, &with_roles("bo", catalog_only))
            .await,
        Err(TargetError::Retryable { .. })
    ));
    emulator.set_faults(Faults::default());
    assert_eq!(kibo_roles(&emulator, &adopted.id), [1, 3]);

    env.sandbox.stop().await;
}

/// Names that try to leave their place in a request: a path separator, a query, a fragment,
/// an escape of their own, non-ASCII letters, and a line break that would start a header.
const HOSTILE: [&str; 4] = [
    "a/b?c=1#d%2Fe",
    "..%2F..",
    "zoë-ünïcødé",
    "eve\r\nx-admin: true",
];

/// Each hostile name either makes the whole round trip (create, find, update, read,
/// delete) on its own account and no other, or is refused before anything is sent, as a
/// rejection (status 0) that names the problem, never a retryable "request failed".
async fn hostile(case: Case, refused: &[&str]) {
    let env = Env::start().await;
    let emulator = env.emulator(case.kind).clone();
    let target = env.target(case.kind, |_| {});
    // A bystander whose account a misplaced request would hit.
    let bystander = (case.user)("a");
    let bystander_id = target.create(&bystander).await.unwrap().id;
    for who in HOSTILE {
        env.next_second();
        let payload = (case.user)(who);
        if refused.contains(&who) {
            let requests = emulator.requests();
            match target.find(&payload).await {
                Err(TargetError::Unusable { message }) => {
                    // Named as written, escapes and all, so the admin sees what to fix.
                    let named = format!("{who:?}");
                    assert!(
                        message.contains(named.trim_matches('"')),
                        "{who:?}: {message}"
                    );
                }
                other => panic!("{who:?}: expected a refusal, got {other:?}"),
            }
            assert_eq!(emulator.requests(), requests, "{who:?}: nothing sent");
            continue;
        }
        assert_eq!(target.find(&payload).await.unwrap(), None, "{who:?}");
        let created = target.create(&payload).await.unwrap();
        let found = target.find(&payload).await.unwrap();
        assert_eq!(found.map(|f| f.id), Some(created.id.clone()), "{who:?}");
        let updated = target
            .update(&created.id, &renamed(&case, payload.clone(), "Souza"))
            .await
            .unwrap();
        assert_eq!(updated.id, created.id, "{who:?}");
        assert_eq!(only(&case, &emulator, who).fields[case.last_name], "Souza");
        assert!(target.read(&created.id).await.unwrap().is_some(), "{who:?}");
        target.delete(&created.id).await.unwrap();
        assert!(live(&case, &emulator, who).is_empty(), "{who:?}");
    }
    let bystander = target.read(&bystander_id).await.unwrap().unwrap();
    assert_eq!(bystander.fields[case.last_name], "Lima", "untouched");
    env.sandbox.stop().await;
}

#[tokio::test]
async fn appgate_hostile_names_stay_in_their_query_string() {
    hostile(appgate_case(), &[]).await;
}

#[tokio::test]
async fn vikingcloud_hostile_usernames_are_escaped_path_segments_or_refused() {
    hostile(vikingcloud_case(), &["eve\r\nx-admin: true"]).await;
}

#[tokio::test]
async fn kibo_hostile_addresses_stay_in_their_query_string() {
    hostile(kibo_case(), &[]).await;
}

#[tokio::test]
async fn primavera_addresses_a_header_cannot_carry_are_refused_before_sending() {
    hostile(primavera_case(), &["zoë-ünïcødé", "eve\r\nx-admin: true"]).await;
}

/// Accounts made by hand, as a person in the vendor's console makes them: through the
/// emulator's control endpoint. Returns the id it shows.
async fn made_by_hand(emulator: &EmulatorHandle, fields: &Payload) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_sandbox/accounts", emulator.origin()))
        .json(fields)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let made: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

/// `user(who)` as a console accepts it: without the empty values an API client sends.
fn typed_by_hand(case: &Case, who: &str) -> Payload {
    (case.user)(who)
        .into_iter()
        .filter(|(_, value)| value.as_str() != Some(""))
        .collect()
}

/// Every page the adapter's paging gives, in order, and how many pages that took.
async fn list_all(env: &Env, target: &dyn targets::Target) -> (Vec<RemoteAccount>, usize) {
    let mut accounts = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        // A fresh clock second per page keeps Primavera's per-second limit out of the way.
        env.next_second();
        let page = target.list(cursor.as_deref()).await.unwrap();
        pages += 1;
        accounts.extend(page.accounts);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (accounts, pages),
        }
        assert!(pages < 50, "the paging never ends");
    }
}

/// The read-back a reconcile needs: 250 accounts made in the emulator, one made by the
/// adapter and one made by hand are each listed exactly once across several pages; the
/// adapter's account carries the bridge's mark and the hand-made one does not; and what
/// `as_stored` says the target holds of a delivered payload is what it holds. `marking`
/// is the field the shipped mapping fills and the vendor's mark is read from, where the
/// adapter does not write the mark itself.
async fn listing(case: Case, marking: Option<&str>) {
    let env = Env::start().await;
    let emulator = env.emulator(case.kind).clone();
    let target = env.target(case.kind, |_| {});
    assert!(target.can_list());
    for i in 0..250 {
        emulator.insert_account((case.user)(&format!("listed-{i:03}")));
    }
    let mut delivered = (case.user)("ours");
    if let Some(field) = marking {
        delivered.insert(field.to_owned(), json!("idp-0001"));
    }
    let ours = target.create(&delivered).await.unwrap();
    let hand_made = made_by_hand(&emulator, &typed_by_hand(&case, "by-hand")).await;

    let (listed, pages) = list_all(&env, target.as_ref()).await;
    assert!(pages >= 2, "{pages} page(s)");
    let mut ids: Vec<String> = listed.iter().map(|account| account.id.clone()).collect();
    ids.sort();
    let mut held: Vec<String> = emulator
        .accounts()
        .into_iter()
        .filter(|account| !account.deleted)
        .map(|account| account.id)
        .collect();
    held.sort();
    assert_eq!(held.len(), 252);
    assert_eq!(ids, held, "each account listed exactly once");

    let listed_as = |id: &str| listed.iter().find(|account| account.id == id).unwrap();
    assert!(
        target.marked(listed_as(&ours.id)),
        "{:?}",
        listed_as(&ours.id)
    );
    assert!(!target.marked(listed_as(&hand_made)));
    let marked: Vec<&str> = listed
        .iter()
        .filter(|account| target.marked(account))
        .map(|account| account.id.as_str())
        .collect();
    assert_eq!(marked, [ours.id.as_str()], "only the adapter's own account");

    let actual = &listed_as(&ours.id).fields;
    for (field, value) in target.as_stored(&delivered) {
        assert_eq!(actual.get(&field), Some(&value), "{field} as stored");
    }
    env.sandbox.stop().await;
}

#[tokio::test]
async fn appgate_lists_every_account_by_range_and_tags_its_own() {
    listing(appgate_case(), None).await;
}

#[tokio::test]
async fn kibo_lists_every_account_by_start_index_and_marks_by_external_id() {
    listing(kibo_case(), Some("externalId")).await;
}

#[tokio::test]
async fn primavera_lists_every_user_by_offset_and_marks_by_ldap_guid() {
    listing(primavera_case(), Some("ldapGuid")).await;
}

/// VikingCloud has no list call: a reconcile reads each user it knows. The adapter still
/// marks the users it creates and says how it stores a payload.
#[tokio::test]
async fn vikingcloud_cannot_list_but_marks_its_users_in_their_notes() {
    let case = vikingcloud_case();
    let env = Env::start().await;
    let emulator = env.emulator(case.kind).clone();
    let target = env.target(case.kind, |_| {});
    assert!(!target.can_list());
    assert!(matches!(
        target.list(None).await,
        Err(TargetError::Unusable { .. })
    ));
    let mut delivered = (case.user)("ours");
    delivered.insert("userKey".to_owned(), json!({"username": "ours"}));
    let ours = target.create(&delivered).await.unwrap();
    let ours = target.read(&ours.id).await.unwrap().unwrap();
    assert!(target.marked(&ours), "{:?}", ours.fields);
    for (field, value) in target.as_stored(&delivered) {
        assert_eq!(ours.fields.get(&field), Some(&value), "{field} as stored");
    }
    made_by_hand(&emulator, &typed_by_hand(&case, "by-hand")).await;
    let hand_made = target.find(&(case.user)("by-hand")).await.unwrap().unwrap();
    assert!(!target.marked(&hand_made));
    env.sandbox.stop().await;
}
