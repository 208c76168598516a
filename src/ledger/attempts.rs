//! The attempt history: how each delivery attempt ended, and what that does to its ledger
//! row (the transition itself is `lifecycle::transition`).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::{Map, Value};

use super::lifecycle::{transition, Progress, StateKey};
use super::{LedgerError, Store};

/// How one attempt ended, as the fan-out classified it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptOutcome {
    Delivered {
        /// The target's id for the account; `None` after a delete.
        remote_id: Option<String>,
        status: Option<u16>,
    },
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at: i64,
        /// Whether the failure counts toward the dead-letter limit: not when the target as a
        /// whole was down or throttling.
        charged: bool,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
    Rejected {
        /// `None` when the adapter refused the payload before sending anything.
        status: Option<u16>,
        error: String,
    },
}

impl AttemptOutcome {
    /// The status and error text of a failed attempt.
    pub(crate) fn failure(&self) -> (Option<u16>, Option<&str>) {
        match self {
            AttemptOutcome::Delivered { status, .. } => (*status, None),
            AttemptOutcome::Retry { status, error, .. }
            | AttemptOutcome::Dead { status, error }
            | AttemptOutcome::Rejected { status, error } => (*status, Some(error)),
        }
    }
}

/// One line of the attempt history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Attempt {
    pub at: i64,
    pub user_id: String,
    pub target: String,
    pub operation: String,
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub outcome: String,
    pub error: Option<String>,
    /// The key of the desired state this attempt sent.
    pub payload_hash: StateKey,
    pub mapping_version: String,
    /// The body this attempt sent (the desired payload it was claimed with), kept as the
    /// delivered one when the desired state moved on while it was in flight. Not part of
    /// the history: `None` in lines read back.
    #[serde(skip)]
    pub sent: Option<Map<String, Value>>,
}

impl Store<'_> {
    /// Records how an attempt to deliver `sent_hash` ended, and appends it to the history.
    /// If the desired state moved on while the attempt ran, the row stays due for it. Reads
    /// only the row's progress and key, never its payload: this runs on the writer once per
    /// attempt.
    pub(crate) fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: &AttemptOutcome,
    ) -> Result<(), LedgerError> {
        let current = self
            .conn()
            .prepare_cached(
                "SELECT desired_hash, state, attempts, next_attempt_at, failing_since \
                 FROM deliveries WHERE user_id = ?1 AND target = ?2",
            )?
            .query_row(params![attempt.user_id, attempt.target], |row| {
                Ok((
                    row.get::<_, StateKey>(0)?,
                    Progress {
                        state: row.get(1)?,
                        attempts: row.get(2)?,
                        next_attempt_at: row.get(3)?,
                        failing_since: row.get(4)?,
                    },
                ))
            })
            .optional()?;
        let Some((desired_hash, from)) = current else {
            return self.append_attempt(attempt);
        };
        let moved_on = desired_hash != attempt.payload_hash;
        let now = attempt.at;
        let to = transition(from, outcome, moved_on, now);
        let (status, error) = outcome.failure();
        // One write of the row: the key and id it now holds change only with a delivery.
        // A delivery sets `delivered_payload` to NULL (the same as `payload`) unless the
        // desired state moved on meanwhile: then to the body sent, written out only then.
        let (delivered, remote_id) = match outcome {
            AttemptOutcome::Delivered { remote_id, .. } => (true, remote_id.as_deref()),
            _ => (false, None),
        };
        let sent = match (&attempt.sent, delivered && moved_on) {
            (Some(body), true) => Some(serde_json::to_string(body)?),
            _ => None,
        };
        self.conn()
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = ?4, next_attempt_at = ?5, \
                 failing_since = ?6, last_status = ?7, last_error = ?8, updated_at = ?9, \
                 delivered_hash = CASE WHEN ?10 THEN ?11 ELSE delivered_hash END, \
                 remote_id = CASE WHEN ?10 THEN ?12 ELSE remote_id END, \
                 delivered_payload = CASE WHEN ?10 THEN ?13 ELSE delivered_payload END \
                 WHERE user_id = ?1 AND target = ?2",
            )?
            .execute(params![
                attempt.user_id,
                attempt.target,
                to.state,
                to.attempts,
                to.next_attempt_at,
                to.failing_since,
                status,
                error,
                now,
                delivered,
                attempt.payload_hash,
                remote_id,
                sent,
            ])?;
        self.append_attempt(attempt)
    }

    fn append_attempt(&self, attempt: &Attempt) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO delivery_attempts (at, user_id, target, operation, status, \
                 duration_ms, outcome, error, payload_hash, mapping_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                attempt.at,
                attempt.user_id,
                attempt.target,
                attempt.operation,
                attempt.status,
                attempt.duration_ms as i64,
                attempt.outcome,
                attempt.error,
                attempt.payload_hash,
                attempt.mapping_version,
            ])?;
        Ok(())
    }

    pub(crate) fn history(
        &self,
        user_id: &str,
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT at, user_id, target, operation, status, duration_ms, outcome, error, \
             payload_hash, mapping_version FROM delivery_attempts \
             WHERE user_id = ?1 AND (?2 IS NULL OR target = ?2) ORDER BY seq DESC LIMIT ?3",
        )?;
        let attempts = stmt
            .query_map(params![user_id, target, limit as i64], |row| {
                Ok(Attempt {
                    at: row.get(0)?,
                    user_id: row.get(1)?,
                    target: row.get(2)?,
                    operation: row.get(3)?,
                    status: row.get(4)?,
                    duration_ms: row.get::<_, i64>(5)? as u64,
                    outcome: row.get(6)?,
                    error: row.get(7)?,
                    payload_hash: row.get(8)?,
                    mapping_version: row.get(9)?,
                    sent: None,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(attempts)
    }

    /// Deletes attempt history older than `before`; returns how many lines went.
    pub(crate) fn prune_attempts(&self, before: i64) -> Result<usize, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM delivery_attempts WHERE at < ?1")?
            .execute([before])?)
    }
}
