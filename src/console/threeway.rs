//! A user's page, per target: desired, last delivered and the account as a reconcile or a
//! sync last read it, field by field, every value as the target would store it, with the
//! cells that differ marked in text as well as colour.

use maud::{html, Markup};
use serde_json::{Map, Value};

use crate::ledger::{AccountRead, Delivery};

use super::layout;

/// What the ledger knows of the body the target last received.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Delivered {
    /// No attempt has delivered anything yet.
    Nothing,
    /// The state delivered last, as the target would store it.
    Body(Map<String, Value>),
    /// The target received a state the ledger no longer holds the body of (it was sent
    /// while a newer change came in).
    NotKept,
}

impl Delivered {
    /// The delivered body of `delivery`: `kept` where migration 10 kept one because it
    /// differs from the desired one, else the desired body itself when the keys agree.
    pub(super) fn of(delivery: &Delivery, kept: Option<Map<String, Value>>) -> Delivered {
        match (&delivery.delivered_hash, kept) {
            (None, _) => Delivered::Nothing,
            (Some(_), Some(body)) => Delivered::Body(body),
            (Some(key), None) if *key == delivery.desired.hash => {
                Delivered::Body(delivery.desired.payload.clone())
            }
            (Some(_), None) => Delivered::NotKept,
        }
    }
}

/// One field's row: its three values (`None`: the body has no such field) and what differs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldRow {
    pub field: String,
    pub desired: Option<Value>,
    pub delivered: Option<Value>,
    pub actual: Option<Value>,
    /// The delivered value is not the desired one: a change still to be delivered.
    pub pending: bool,
    /// The account's value is not the one delivered: changed on the target.
    pub drifted: bool,
    /// The account's value is not the desired one.
    pub off_desired: bool,
    /// The mapping does not write the field (the target's own, create-only, unmanaged),
    /// so its values are shown but not compared.
    pub compared: bool,
}

/// The rows of one target, managed fields first in name order, then those only the
/// account holds. `desired` and `delivered` come as the target would store them, secrets
/// already taken out; the account as the ledger kept it (secrets never stored).
pub(super) fn rows(
    delivery: &Delivery,
    desired: &Map<String, Value>,
    delivered: Option<&Map<String, Value>>,
    account: Option<&Map<String, Value>>,
) -> Vec<FieldRow> {
    let skipped = |name: &str| {
        delivery.desired.create_only.iter().any(|f| f == name)
            || delivery.desired.unmanaged.iter().any(|f| f == name)
    };
    let mut names: Vec<&String> = desired
        .keys()
        .chain(delivered.into_iter().flat_map(Map::keys))
        .collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<FieldRow> = names
        .into_iter()
        .map(|name| {
            let want = desired.get(name).cloned();
            let sent = delivered.and_then(|d| d.get(name)).cloned();
            let held = account.and_then(|a| a.get(name)).cloned();
            let compared = !skipped(name);
            // A field the target leaves out of its answer is not known to differ.
            let read = compared && held.is_some();
            FieldRow {
                field: name.clone(),
                pending: compared && delivered.is_some() && sent != want,
                drifted: read && delivered.is_some() && held != sent,
                off_desired: read && held != want,
                desired: want,
                delivered: sent,
                actual: held,
                compared,
            }
        })
        .collect();
    if let Some(account) = account {
        rows.extend(
            account
                .iter()
                .filter(|(name, _)| {
                    !desired.contains_key(name.as_str())
                        && !delivered.is_some_and(|d| d.contains_key(name.as_str()))
                })
                .map(|(name, value)| FieldRow {
                    field: name.clone(),
                    desired: None,
                    delivered: None,
                    actual: Some(value.clone()),
                    pending: false,
                    drifted: false,
                    off_desired: false,
                    compared: false,
                }),
        );
    }
    rows
}

fn value(value: Option<&Value>) -> Markup {
    match value {
        None => html! { span.muted { "(none)" } },
        Some(Value::String(text)) => html! { (text) },
        Some(other) => html! { code { (other.to_string()) } },
    }
}

/// The comparison table of one target.
pub(super) fn render(
    delivered: &Delivered,
    read: Option<&AccountRead>,
    rows: &[FieldRow],
) -> Markup {
    let differing = rows
        .iter()
        .filter(|r| r.pending || r.drifted || r.off_desired)
        .count();
    html! {
        p.threeway-summary {
            @match read {
                None => {
                    span.state.unknown { "not read yet" }
                    " No reconcile or sync has read this account yet."
                },
                Some(read) => {
                    "Account read " (layout::when(read.read_at))
                    @if let Some(remote) = &read.remote_id { " (target id " code { (remote) } ")" }
                    @if read.account.is_none() { ": " span.state.dead { "the target held no account" } }
                    "."
                }
            }
            " "
            @if differing == 0 {
                span.state.delivered { "in sync" }
            } @else {
                span.state.differs {
                    (differing) @if differing == 1 { " field differs" } @else { " fields differ" }
                }
            }
        }
        table.threeway {
            thead {
                tr {
                    th scope="col" { "Field" }
                    th scope="col" { "Desired" }
                    th scope="col" { "Last delivered" }
                    th scope="col" { "On the target" }
                }
            }
            tbody {
                @for row in rows {
                    tr class=(if row.compared { "" } else { "unmanaged" }) {
                        th scope="row" { code { (row.field) } }
                        td { (value(row.desired.as_ref())) }
                        @match delivered {
                            Delivered::Nothing => td.muted { "nothing delivered yet" },
                            Delivered::NotKept => td.muted { "not kept" },
                            Delivered::Body(_) => td class=(if row.pending { "differs" } else { "" }) {
                                (value(row.delivered.as_ref()))
                                @if row.pending { " " span.marker { "≠ desired (pending)" } }
                            },
                        }
                        @match read {
                            None => td.muted { "not read yet" },
                            Some(AccountRead { account: None, .. }) => td.muted { "no account" },
                            Some(_) => td class=(if row.drifted || row.off_desired { "differs" } else { "" }) {
                                (value(row.actual.as_ref()))
                                @if row.drifted {
                                    " " span.marker { "≠ delivered (drift)" }
                                } @else if row.off_desired {
                                    " " span.marker { "≠ desired" }
                                }
                            },
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::{DeliveryOp, DeliveryState, Desired, StateKey};

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn delivery(payload: Value, delivered: Option<&str>) -> Delivery {
        Delivery {
            desired: Desired {
                user_id: "u1".into(),
                target: "kibo".into(),
                operation: DeliveryOp::Upsert,
                payload: body(payload),
                create_only: vec!["userName".into()],
                unmanaged: Vec::new(),
                password_field: None,
                secret_id: None,
                retain_secret: false,
                hash: StateKey::sample("now"),
                mapping_version: "m1".into(),
            },
            delivered_hash: delivered.map(StateKey::sample),
            remote_id: Some("r1".into()),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            changed_at: 0,
            updated_at: 0,
            warnings: Vec::new(),
            failing_since: None,
        }
    }

    #[test]
    fn the_delivered_body_is_the_kept_one_the_desired_one_or_not_known() {
        let row = delivery(json!({"a": 1}), None);
        assert_eq!(Delivered::of(&row, None), Delivered::Nothing);
        let row = delivery(json!({"a": 1}), Some("now"));
        assert_eq!(
            Delivered::of(&row, None),
            Delivered::Body(body(json!({"a": 1})))
        );
        let row = delivery(json!({"a": 1}), Some("before"));
        assert_eq!(
            Delivered::of(&row, Some(body(json!({"a": 0})))),
            Delivered::Body(body(json!({"a": 0})))
        );
        assert_eq!(Delivered::of(&row, None), Delivered::NotKept);
    }

    #[test]
    fn each_field_says_whether_it_is_pending_drifted_or_off_the_desired_value() {
        let row = delivery(json!({}), Some("before"));
        let desired =
            body(json!({"firstName": "Ana", "lastName": "Lima", "userName": "ana", "phone": "1"}));
        let delivered =
            body(json!({"firstName": "Ann", "lastName": "Lima", "userName": "ana", "phone": "1"}));
        let account =
            body(json!({"firstName": "Ann", "lastName": "Hand", "userName": "x", "id": "r1"}));
        let rows = rows(&row, &desired, Some(&delivered), Some(&account));
        let flags: Vec<(&str, bool, bool, bool, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r.field.as_str(),
                    r.pending,
                    r.drifted,
                    r.off_desired,
                    r.compared,
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                ("firstName", true, false, true, true),
                ("lastName", false, true, true, true),
                // The target did not return it: not known to differ.
                ("phone", false, false, false, true),
                // Sent on create only: shown, not compared.
                ("userName", false, false, false, false),
                // Only the account holds it.
                ("id", false, false, false, false),
            ]
        );
    }
}
