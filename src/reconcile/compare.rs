//! Reconciliation, step one: the pure three-way comparison of one (user, target) pair:
//! desired and delivered (the ledger row) against actual (the account the target holds).
//! No I/O here; the run feeds it and acts on what it finds.

use serde::Serialize;
use serde_json::Value;

use crate::ledger::{Delivery, DeliveryOp, DeliveryState};
use crate::targets::{Payload, RemoteAccount, Target};

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FindingKind {
    /// Delivered, but the target no longer has the account.
    Missing,
    /// A managed field differs from what was delivered.
    Drifted,
    /// No target id in the ledger, but an account with the user's natural key exists.
    Unlinked,
    /// An account no user accounts for, carrying the bridge's mark.
    OrphanMarked,
    /// An account no user accounts for, made by hand: never touched.
    OrphanUnmarked,
    /// Desired differs from delivered: the normal queue, shown for completeness.
    Pending,
}

impl FindingKind {
    pub(crate) const ALL: [FindingKind; 6] = [
        FindingKind::Missing,
        FindingKind::Drifted,
        FindingKind::Unlinked,
        FindingKind::OrphanMarked,
        FindingKind::OrphanUnmarked,
        FindingKind::Pending,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Drifted => "drifted",
            FindingKind::Unlinked => "unlinked",
            FindingKind::OrphanMarked => "orphan_marked",
            FindingKind::OrphanUnmarked => "orphan_unmarked",
            FindingKind::Pending => "pending",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<FindingKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One field involved in a finding, with its three values. `delivered` is known only while
/// the row is delivered (then it equals desired: the ledger keeps the delivered state's
/// hash, not its body); `None` stands for "not known" or "absent".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FieldDiff {
    pub field: String,
    pub desired: Option<Value>,
    pub delivered: Option<Value>,
    pub actual: Option<Value>,
}

/// One finding about one (user, target) pair or one unaccounted account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    pub kind: FindingKind,
    pub target: String,
    /// The SCIM user, where there is one (orphans have none).
    pub user_id: Option<String>,
    /// The target's id for the account, where one is known.
    pub remote_id: Option<String>,
    pub fields: Vec<FieldDiff>,
}

/// Compares one ledger row (`None`: no user accounts for the account) with the account the
/// target holds (`None`: the target has none; for a row without a target id, none with the
/// user's natural key). `None` when they agree.
pub(crate) fn compare(
    target: &dyn Target,
    row: Option<&Delivery>,
    actual: Option<&RemoteAccount>,
) -> Option<Finding> {
    let finding = |kind, row: Option<&Delivery>, remote_id: Option<&str>, fields| Finding {
        kind,
        target: target.name().to_owned(),
        user_id: row.map(|row| row.desired.user_id.clone()),
        remote_id: remote_id.map(str::to_owned),
        fields,
    };
    let Some(row) = row else {
        let account = actual?;
        return Some(finding(
            orphan(target, account),
            None,
            Some(&account.id),
            vec![],
        ));
    };
    let waiting = row.state != DeliveryState::Delivered;
    let operation = row.desired.operation;
    match (actual, row.remote_id.as_deref()) {
        // A deleted user's account is meant to be gone.
        (None, _) if operation == DeliveryOp::Delete => None,
        (None, Some(id)) => Some(finding(FindingKind::Missing, Some(row), Some(id), vec![])),
        (None, None) => waiting.then(|| finding(FindingKind::Pending, Some(row), None, vec![])),
        // The key of a deleted user now names an account the bridge has no live user for.
        (Some(account), None) if operation == DeliveryOp::Delete => Some(finding(
            orphan(target, account),
            None,
            Some(&account.id),
            vec![],
        )),
        (Some(account), None) => Some(finding(
            FindingKind::Unlinked,
            Some(row),
            Some(&account.id),
            vec![],
        )),
        (Some(account), Some(id)) if waiting => Some(finding(
            FindingKind::Pending,
            Some(row),
            Some(id),
            differences(target, row, account, None),
        )),
        // A disabled account is checked for existence only: how each vendor marks an account
        // disabled is the adapter's business, not the mapping's.
        (Some(_), Some(_)) if operation != DeliveryOp::Upsert => None,
        (Some(account), Some(id)) => {
            let desired = target.as_stored(&row.desired.payload);
            let fields = differences(target, row, account, Some(&desired));
            (!fields.is_empty()).then(|| finding(FindingKind::Drifted, Some(row), Some(id), fields))
        }
    }
}

fn orphan(target: &dyn Target, account: &RemoteAccount) -> FindingKind {
    if target.marked(account) {
        FindingKind::OrphanMarked
    } else {
        FindingKind::OrphanUnmarked
    }
}

/// The managed fields whose value on the target differs from the desired one, as the target
/// would store it. `delivered` is the delivered payload when it is known. Not compared:
/// fields the target never returns (write-only ones, passwords, and any it leaves out of its
/// answer), fields it assigns itself, fields sent on create only, and fields the bridge does
/// not manage on an account it adopted.
fn differences(
    target: &dyn Target,
    row: &Delivery,
    account: &RemoteAccount,
    delivered: Option<&Payload>,
) -> Vec<FieldDiff> {
    let desired = target.as_stored(&row.desired.payload);
    let schema = target.schema();
    let desired_ref = &row.desired;
    desired
        .iter()
        .filter(|(name, _)| {
            !schema
                .field(name)
                .is_some_and(|spec| spec.write_only || spec.read_only)
                && desired_ref.password_field.as_deref() != Some(name.as_str())
                && !desired_ref.create_only.contains(name)
                && !desired_ref.unmanaged.contains(name)
        })
        .filter_map(|(name, want)| {
            let held = account.fields.get(name)?;
            (held != want).then(|| FieldDiff {
                field: name.clone(),
                desired: Some(want.clone()),
                delivered: delivered.and_then(|d| d.get(name)).cloned(),
                actual: Some(held.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::{Desired, StateKey};
    use crate::targets::{object, FieldKind, FieldSpec, TargetResult, TargetSchema};

    /// A target whose accounts are marked by `"note": "scim-bridge"` and which stores
    /// e-mail addresses in lower case.
    pub(crate) struct Shape {
        schema: TargetSchema,
    }

    impl Shape {
        pub(crate) fn new() -> Shape {
            let mut secret = FieldSpec::optional("secret", FieldKind::String);
            secret.write_only = true;
            let mut id = FieldSpec::optional("id", FieldKind::String);
            id.read_only = true;
            Shape {
                schema: TargetSchema {
                    fields: vec![
                        FieldSpec::optional("email", FieldKind::String),
                        FieldSpec::optional("name", FieldKind::String),
                        FieldSpec::optional("note", FieldKind::String),
                        secret,
                        id,
                    ],
                    natural_key: &["email"],
                },
            }
        }
    }

    #[async_trait::async_trait]
    impl Target for Shape {
        fn name(&self) -> &str {
            "shape"
        }
        fn schema(&self) -> &TargetSchema {
            &self.schema
        }
        async fn find(&self, _: &Payload) -> TargetResult<Option<RemoteAccount>> {
            unreachable!("the comparison does no I/O")
        }
        async fn create(&self, _: &Payload) -> TargetResult<RemoteAccount> {
            unreachable!("the comparison does no I/O")
        }
        async fn update(&self, _: &str, _: &Payload) -> TargetResult<RemoteAccount> {
            unreachable!("the comparison does no I/O")
        }
        async fn disable(&self, _: &str, _: &Payload) -> TargetResult<RemoteAccount> {
            unreachable!("the comparison does no I/O")
        }
        async fn delete(&self, _: &str) -> TargetResult<()> {
            unreachable!("the comparison does no I/O")
        }
        async fn read(&self, _: &str) -> TargetResult<Option<RemoteAccount>> {
            unreachable!("the comparison does no I/O")
        }
        fn marked(&self, account: &RemoteAccount) -> bool {
            account.fields.get("note") == Some(&json!("scim-bridge"))
        }
        fn as_stored(&self, payload: &Payload) -> Payload {
            let mut stored = payload.clone();
            if let Some(Value::String(email)) = stored.get("email") {
                let lower = email.to_lowercase();
                stored.insert("email".into(), Value::String(lower));
            }
            stored
        }
    }

    pub(crate) fn row(
        user: &str,
        operation: DeliveryOp,
        state: DeliveryState,
        remote_id: Option<&str>,
        payload: Value,
    ) -> Delivery {
        Delivery {
            desired: Desired {
                user_id: user.into(),
                target: "shape".into(),
                operation,
                payload: object(payload),
                create_only: vec!["created_by".into()],
                unmanaged: vec![],
                password_field: Some("secret".into()),
                secret_id: None,
                retain_secret: false,
                hash: StateKey::sample("h"),
                mapping_version: "m".into(),
            },
            delivered_hash: (state == DeliveryState::Delivered).then(|| StateKey::sample("h")),
            remote_id: remote_id.map(str::to_owned),
            state,
            attempts: 0,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            changed_at: 0,
            updated_at: 0,
            warnings: vec![],
            failing_since: None,
        }
    }

    pub(crate) fn account(id: &str, fields: Value) -> RemoteAccount {
        RemoteAccount {
            id: id.into(),
            fields: object(fields),
        }
    }

    /// What a case is called, the ledger row, the account, and the finding's kind and fields.
    type Case = (
        &'static str,
        Option<Delivery>,
        Option<RemoteAccount>,
        Option<(FindingKind, Vec<&'static str>)>,
    );

    #[test]
    fn the_three_way_comparison_over_every_case() {
        use DeliveryOp::{Delete, Disable, Upsert};
        use DeliveryState::{Delivered, Rejected};
        use FindingKind::*;
        const QUEUED: DeliveryState = DeliveryState::Pending;
        let ada = json!({"email": "Ada@Example.com", "name": "Ada", "note": "scim-bridge",
            "secret": "s3cret", "created_by": "bridge"});
        let held = json!({"id": "7", "email": "ada@example.com", "name": "Ada",
            "note": "scim-bridge", "created_by": "someone"});
        let edited = json!({"id": "7", "email": "ada@example.com", "name": "Edited",
            "note": "scim-bridge"});
        let hand_made = json!({"id": "9", "email": "bob@example.com", "name": "Bob"});
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("in step: normalised e-mail, write-only and create-only fields left out",
                Some(row("u1", Upsert, Delivered, Some("7"), ada.clone())), Some(account("7", held.clone())), None),
            ("deleted by hand",
                Some(row("u1", Upsert, Delivered, Some("7"), ada.clone())), None, Some((Missing, vec![]))),
            ("a managed field edited by hand",
                Some(row("u1", Upsert, Delivered, Some("7"), ada.clone())), Some(account("7", edited.clone())), Some((Drifted, vec!["name"]))),
            ("a field the target does not return is not drift",
                Some(row("u1", Upsert, Delivered, Some("7"), ada.clone())), Some(account("7", json!({"id": "7"}))), None),
            ("found by natural key, not linked",
                Some(row("u1", Upsert, QUEUED, None, ada.clone())), Some(account("7", held.clone())), Some((Unlinked, vec![]))),
            ("queued, account not there yet",
                Some(row("u1", Upsert, QUEUED, None, ada.clone())), None, Some((Pending, vec![]))),
            ("queued change over an edited account",
                Some(row("u1", Upsert, QUEUED, Some("7"), ada.clone())), Some(account("7", edited.clone())), Some((Pending, vec!["name"]))),
            ("a rejected change counts as pending",
                Some(row("u1", Upsert, Rejected, Some("7"), ada.clone())), Some(account("7", held.clone())), Some((Pending, vec![]))),
            ("disabled account still there",
                Some(row("u1", Disable, Delivered, Some("7"), ada.clone())), Some(account("7", edited.clone())), None),
            ("disabled account deleted by hand",
                Some(row("u1", Disable, Delivered, Some("7"), ada.clone())), None, Some((Missing, vec![]))),
            ("deleted user, account gone",
                Some(row("u1", Delete, Delivered, None, ada.clone())), None, None),
            ("deleted user whose key is taken again",
                Some(row("u1", Delete, Delivered, None, ada.clone())), Some(account("7", held.clone())), Some((OrphanMarked, vec![]))),
            ("an account with the bridge's mark and no user",
                None, Some(account("7", held.clone())), Some((OrphanMarked, vec![]))),
            ("an account made by hand",
                None, Some(account("9", hand_made.clone())), Some((OrphanUnmarked, vec![]))),
            ("nothing on either side", None, None, None),
        ];
        for (case, row, actual, want) in cases {
            let got = compare(&Shape::new(), row.as_ref(), actual.as_ref());
            let got = got.map(|f| {
                (
                    f.kind,
                    f.fields.iter().map(|d| d.field.clone()).collect::<Vec<_>>(),
                )
            });
            let want = want.map(|(kind, fields)| {
                (
                    kind,
                    fields.into_iter().map(String::from).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn a_drift_carries_its_three_values_and_ids() {
        let ada = json!({"email": "ada@example.com", "name": "Ada"});
        let delivered = row(
            "u1",
            DeliveryOp::Upsert,
            DeliveryState::Delivered,
            Some("7"),
            ada,
        );
        let edited = account("7", json!({"email": "ada@example.com", "name": "Edited"}));
        let finding = compare(&Shape::new(), Some(&delivered), Some(&edited)).unwrap();
        assert_eq!(finding.user_id.as_deref(), Some("u1"));
        assert_eq!(finding.remote_id.as_deref(), Some("7"));
        assert_eq!(
            finding.fields,
            vec![FieldDiff {
                field: "name".into(),
                desired: Some(json!("Ada")),
                delivered: Some(json!("Ada")),
                actual: Some(json!("Edited")),
            }]
        );
    }
}
