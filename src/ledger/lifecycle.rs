//! The delivery life cycle as types: what a target should do with a user, where its ledger
//! row stands, and the one pure transition an attempt's outcome makes. Stored text is parsed
//! strictly: a value no build wrote is an error, never a guess.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AttemptOutcome;

/// Stored text that names no known state or operation.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {text:?} in the ledger")]
pub(crate) struct UnknownText {
    kind: &'static str,
    text: String,
}

/// What a target should do with a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeliveryOp {
    Upsert,
    Disable,
    Delete,
}

impl DeliveryOp {
    pub(crate) const ALL: [DeliveryOp; 3] =
        [DeliveryOp::Upsert, DeliveryOp::Disable, DeliveryOp::Delete];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryOp::Upsert => "upsert",
            DeliveryOp::Disable => "disable",
            DeliveryOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<DeliveryOp, UnknownText> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == text)
            .ok_or_else(|| UnknownText {
                kind: "operation",
                text: text.to_owned(),
            })
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeliveryState {
    /// Differs from what the target holds; due at `next_attempt_at`.
    Pending,
    /// Failed in a way worth retrying; due at `next_attempt_at`.
    Retrying,
    /// The target holds the desired state.
    Delivered,
    /// The target refused it; waits for a change to the user or mapping, or a replay.
    Rejected,
    /// Retried too often; waits for a replay.
    Dead,
    /// A disable or delete the target's deprovisioning guard kept back: not sent, waiting
    /// for an operator to release or discard it.
    Held,
}

impl DeliveryState {
    pub(crate) const ALL: [DeliveryState; 6] = [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Delivered,
        DeliveryState::Rejected,
        DeliveryState::Dead,
        DeliveryState::Held,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Dead => "dead",
            DeliveryState::Held => "held",
        }
    }

    /// The state named `text` (stored, or asked for by an operator).
    pub(crate) fn parse(text: &str) -> Option<DeliveryState> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Whether a worker sends rows in this state once they are due.
    pub(crate) fn is_waiting(self) -> bool {
        matches!(self, DeliveryState::Pending | DeliveryState::Retrying)
    }
}

impl FromSql for DeliveryOp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        DeliveryOp::parse(value.as_str()?).map_err(|err| FromSqlError::Other(Box::new(err)))
    }
}

impl ToSql for DeliveryOp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeliveryState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        DeliveryState::parse(text).ok_or_else(|| {
            FromSqlError::Other(Box::new(UnknownText {
                kind: "delivery state",
                text: text.to_owned(),
            }))
        })
    }
}

impl ToSql for DeliveryState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// The part of a ledger row that an attempt's outcome moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub state: DeliveryState,
    /// Failures charged toward the dead-letter limit.
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// When the current desired state first failed to arrive.
    pub failing_since: Option<i64>,
}

/// Where a row goes when an attempt ends with `outcome` at `now`. `moved_on` says the desired
/// state changed while the attempt ran: its failure then says nothing about the new state,
/// which is neither charged nor parked but stays due.
pub(crate) fn transition(
    current: Progress,
    outcome: &AttemptOutcome,
    moved_on: bool,
    now: i64,
) -> Progress {
    match outcome {
        AttemptOutcome::Delivered { .. } => Progress {
            state: if moved_on {
                DeliveryState::Pending
            } else {
                DeliveryState::Delivered
            },
            attempts: 0,
            next_attempt_at: now,
            failing_since: None,
        },
        AttemptOutcome::Retry {
            next_attempt_at,
            charged,
            ..
        } => Progress {
            state: DeliveryState::Retrying,
            attempts: current.attempts + u32::from(*charged && !moved_on),
            next_attempt_at: if moved_on { now } else { *next_attempt_at },
            failing_since: current.failing_since.or((!moved_on).then_some(now)),
        },
        AttemptOutcome::Dead { .. } | AttemptOutcome::Rejected { .. } if moved_on => Progress {
            state: DeliveryState::Pending,
            next_attempt_at: now,
            ..current
        },
        AttemptOutcome::Dead { .. } => Progress {
            state: DeliveryState::Dead,
            attempts: current.attempts + 1,
            ..current
        },
        AttemptOutcome::Rejected { .. } => Progress {
            state: DeliveryState::Rejected,
            ..current
        },
    }
}

/// The key of a desired state, as the ledger stores and compares it: the operation and the
/// payload's hash, and, when the identity provider gave a new password with this change,
/// the id of that sealed password (`upsert:<hash>` or `upsert:<hash>+pw:<id>`). A user the
/// mapping cannot render has `rejected:<hash of the reason>`, so a new reason is a new
/// state. Only this type writes or reads that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateKey {
    kind: KeyKind,
    /// Lowercase hex SHA-256.
    hash: String,
    new_password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Send(DeliveryOp),
    MappingRejected,
}

/// Separates a payload hash from the id of the new password a desired state carries.
const NEW_PASSWORD_MARK: &str = "+pw:";
const MAPPING_REJECTED: &str = "rejected";

impl StateKey {
    /// The key of a rendered payload; `payload_hash` is the mapping engine's hex SHA-256.
    pub(crate) fn new(
        operation: DeliveryOp,
        payload_hash: &str,
        new_password: Option<&str>,
    ) -> StateKey {
        debug_assert!(is_sha256_hex(payload_hash), "{payload_hash:?}");
        StateKey {
            kind: KeyKind::Send(operation),
            hash: payload_hash.to_owned(),
            new_password: new_password.map(str::to_owned),
        }
    }

    /// The key of a user the mapping cannot render, for the reason it gave.
    pub(crate) fn mapping_rejected(reason: &str) -> StateKey {
        StateKey {
            kind: KeyKind::MappingRejected,
            hash: hex::encode(Sha256::digest(reason.as_bytes())),
            new_password: None,
        }
    }

    /// The key stored as `text`. Anything a build would not have written is refused: an
    /// unknown operation, a hash that is not hex SHA-256, an empty password id, or a
    /// password on a mapping rejection.
    pub(crate) fn parse(text: &str) -> Result<StateKey, UnknownText> {
        let unknown = || UnknownText {
            kind: "desired-state key",
            text: text.to_owned(),
        };
        let (head, rest) = text.split_once(':').ok_or_else(unknown)?;
        let kind = match head {
            MAPPING_REJECTED => KeyKind::MappingRejected,
            op => KeyKind::Send(DeliveryOp::parse(op).map_err(|_| unknown())?),
        };
        let (hash, new_password) = match rest.split_once(NEW_PASSWORD_MARK) {
            Some((hash, id)) => (hash, Some(id)),
            None => (rest, None),
        };
        let password_fits = match (kind, new_password) {
            (_, None) => true,
            (KeyKind::MappingRejected, Some(_)) => false,
            (KeyKind::Send(_), Some(id)) => !id.is_empty() && !id.contains(char::is_whitespace),
        };
        if !is_sha256_hex(hash) || !password_fits {
            return Err(unknown());
        }
        Ok(StateKey {
            kind,
            hash: hash.to_owned(),
            new_password: new_password.map(str::to_owned),
        })
    }

    /// Whether this change brought a password the target has not received yet.
    pub(crate) fn carries_new_password(&self) -> bool {
        self.new_password.is_some()
    }

    /// Whether a target that received `delivered` already holds the state `desired`: the
    /// same key, or `desired` carries no new password and `delivered` is the same payload
    /// sent with one.
    pub(crate) fn already_holds(delivered: &StateKey, desired: &StateKey) -> bool {
        delivered == desired
            || (!desired.carries_new_password()
                && delivered.kind == desired.kind
                && delivered.hash == desired.hash)
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KeyKind::Send(op) => write!(f, "{}:{}", op.as_str(), self.hash)?,
            KeyKind::MappingRejected => write!(f, "{MAPPING_REJECTED}:{}", self.hash)?,
        }
        match &self.new_password {
            Some(id) => write!(f, "{NEW_PASSWORD_MARK}{id}"),
            None => Ok(()),
        }
    }
}

/// The key as the admin API and the CLI show it: its stored text.
impl Serialize for StateKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromSql for StateKey {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        StateKey::parse(value.as_str()?).map_err(|err| FromSqlError::Other(Box::new(err)))
    }
}

impl ToSql for StateKey {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

/// Keys for tests that need distinct states, not real payloads.
#[cfg(test)]
impl StateKey {
    /// The upsert key of a payload called `name`.
    pub(crate) fn sample(name: &str) -> StateKey {
        StateKey::sample_of(DeliveryOp::Upsert, name)
    }

    /// The `operation` key of a payload called `name`.
    pub(crate) fn sample_of(operation: DeliveryOp, name: &str) -> StateKey {
        StateKey::new(
            operation,
            &hex::encode(Sha256::digest(name.as_bytes())),
            None,
        )
    }

    /// The same key, carrying the new password `id`.
    pub(crate) fn with_password(self, id: &str) -> StateKey {
        StateKey {
            new_password: Some(id.to_owned()),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn outcomes() -> [(&'static str, AttemptOutcome); 5] {
        [
            (
                "delivered",
                AttemptOutcome::Delivered {
                    remote_id: Some("r".into()),
                    status: Some(200),
                },
            ),
            (
                "retry charged",
                AttemptOutcome::Retry {
                    status: Some(500),
                    error: "e".into(),
                    next_attempt_at: 5_000,
                    charged: true,
                },
            ),
            (
                "retry uncharged",
                AttemptOutcome::Retry {
                    status: None,
                    error: "e".into(),
                    next_attempt_at: 5_000,
                    charged: false,
                },
            ),
            (
                "dead",
                AttemptOutcome::Dead {
                    status: Some(503),
                    error: "e".into(),
                },
            ),
            (
                "rejected",
                AttemptOutcome::Rejected {
                    status: None,
                    error: "e".into(),
                },
            ),
        ]
    }

    /// What every (outcome, moved on) does, whatever state the row was in: the outcome of
    /// the attempt decides, the row's previous state only lends its counters.
    fn expected(outcome: &str, moved_on: bool, from: Progress) -> Progress {
        let at = |state, attempts, next_attempt_at, failing_since| Progress {
            state,
            attempts,
            next_attempt_at,
            failing_since,
        };
        let since = from.failing_since;
        match (outcome, moved_on) {
            ("delivered", false) => at(DeliveryState::Delivered, 0, NOW, None),
            ("delivered", true) => at(DeliveryState::Pending, 0, NOW, None),
            ("retry charged", false) => at(DeliveryState::Retrying, 3, 5_000, since.or(Some(NOW))),
            ("retry uncharged", false) => {
                at(DeliveryState::Retrying, 2, 5_000, since.or(Some(NOW)))
            }
            ("retry charged" | "retry uncharged", true) => {
                at(DeliveryState::Retrying, 2, NOW, since)
            }
            ("dead", false) => at(DeliveryState::Dead, 3, 700, since),
            ("rejected", false) => at(DeliveryState::Rejected, 2, 700, since),
            ("dead" | "rejected", true) => at(DeliveryState::Pending, 2, NOW, since),
            other => panic!("no expectation for {other:?}"),
        }
    }

    #[test]
    fn every_state_and_outcome_pair() {
        for state in DeliveryState::ALL {
            for failing_since in [None, Some(400)] {
                let from = Progress {
                    state,
                    attempts: 2,
                    next_attempt_at: 700,
                    failing_since,
                };
                for (name, outcome) in outcomes() {
                    for moved_on in [false, true] {
                        assert_eq!(
                            transition(from, &outcome, moved_on, NOW),
                            expected(name, moved_on, from),
                            "{state:?} {failing_since:?} {name} moved_on={moved_on}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn stored_text_round_trips_and_unknown_text_is_refused() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        for op in DeliveryOp::ALL {
            assert_eq!(DeliveryOp::parse(op.as_str()).ok(), Some(op));
        }
        for unknown in ["", "Pending", "pending ", "queued"] {
            assert_eq!(DeliveryState::parse(unknown), None, "{unknown:?}");
        }
        for unknown in ["", "Upsert", "create", "update"] {
            assert!(DeliveryOp::parse(unknown).is_err(), "{unknown:?}");
        }
    }

    #[test]
    fn a_state_key_says_whether_it_brings_a_password_and_what_the_target_holds() {
        let hash = "ab".repeat(32);
        let plain = StateKey::new(DeliveryOp::Upsert, &hash, None);
        let with = StateKey::new(DeliveryOp::Upsert, &hash, Some("s1"));
        assert_eq!(plain.to_string(), format!("upsert:{hash}"));
        assert_eq!(with.to_string(), format!("upsert:{hash}+pw:s1"));
        assert!(with.carries_new_password());
        assert!(!plain.carries_new_password());
        // Sent with a password, then the same payload without a new one: already held.
        assert!(StateKey::already_holds(&with, &plain));
        // A new password is never held already, unless it is that very one.
        assert!(!StateKey::already_holds(&plain, &with));
        assert!(StateKey::already_holds(&with, &with));
        let deleted = StateKey::new(DeliveryOp::Delete, &hash, None);
        assert!(!StateKey::already_holds(&plain, &deleted));
        assert!(!StateKey::already_holds(
            &deleted.clone().with_password("s1"),
            &plain
        ));
    }

    #[test]
    fn a_stored_state_key_parses_back_to_itself() {
        let hash = "0123456789abcdef".repeat(4);
        let written = [
            format!("upsert:{hash}"),
            format!("disable:{hash}"),
            format!("delete:{hash}"),
            format!("upsert:{hash}+pw:5d6f0c1e-9a61-4d1c-8f5e-2b7d6c9e0a13"),
            format!("delete:{hash}+pw:s1"),
            StateKey::mapping_rejected("no email").to_string(),
        ];
        for text in written {
            let key = StateKey::parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(
            StateKey::parse(&format!("upsert:{hash}+pw:s1")).unwrap(),
            StateKey::new(DeliveryOp::Upsert, &hash, Some("s1"))
        );
    }

    #[test]
    fn a_state_key_no_build_wrote_is_refused_by_name() {
        let hash = "0123456789abcdef".repeat(4);
        let refused = [
            String::new(),
            hash.clone(),
            format!(":{hash}"),
            format!("create:{hash}"),
            format!("Upsert:{hash}"),
            format!("upsert {hash}"),
            "upsert:".to_owned(),
            "upsert:h1".to_owned(),
            format!("upsert:{}", hash.to_uppercase()),
            format!("upsert:{hash}0"),
            format!("upsert:{}", &hash[1..]),
            format!("upsert:{hash}+pw:"),
            format!("upsert:{hash}+pw:a b"),
            format!("upsert:{hash}+pass:s1"),
            format!("upsert:{hash}:s1"),
            format!("rejected:{hash}+pw:s1"),
            "rejected:no email".to_owned(),
        ];
        for text in refused {
            let err = StateKey::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }
}
