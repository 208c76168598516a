//! The sync ledger's rows: per (user, target) the desired and the delivered state, read by
//! the fan-out workers and the operator's views. Times are unix milliseconds taken from the
//! injected clock by the caller.

use std::collections::HashSet;

use rusqlite::{params, Row};
use serde::Serialize;
use serde_json::{Map, Value};

use super::lifecycle::{DeliveryOp, DeliveryState, StateKey};
use super::{LedgerError, SealedSecret, Store, TargetCircuit};
use crate::mapping::FieldWarning;

/// The state a target should reach for a user, as the mapping rendered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Desired {
    pub user_id: String,
    pub target: String,
    pub operation: DeliveryOp,
    pub payload: Map<String, Value>,
    pub create_only: Vec<String>,
    /// Fields never written to an account the bridge adopted (`managed = false`).
    pub unmanaged: Vec<String>,
    pub password_field: Option<String>,
    /// The pending password (in `user_secrets`) this state must carry, if any.
    pub secret_id: Option<String>,
    /// The target wants the password on every update (Kibo), so it is kept, sealed, for as
    /// long as the user exists there.
    pub retain_secret: bool,
    /// Identifies operation + payload (+ a pending password), so equal states compare equal.
    pub hash: StateKey,
    pub mapping_version: String,
}

/// One (user, target) row of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Delivery {
    pub desired: Desired,
    /// The key of the state the target last received.
    pub delivered_hash: Option<StateKey>,
    pub remote_id: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub changed_at: i64,
    pub updated_at: i64,
    /// Fields the desired state leaves out because the user's value could not be mapped.
    pub warnings: Vec<FieldWarning>,
    /// When the current state first failed to arrive; `None` until it fails.
    pub failing_since: Option<i64>,
}

/// A due delivery as a worker claims it, with the user's sealed password where the
/// delivery may carry one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claimed {
    pub delivery: Delivery,
    pub sealed: Option<SealedSecret>,
}

/// Due rows as read, their JSON columns still to decode: `Store::due` runs on the writer's
/// connection (`Db::read_on_writer`), and the decoding is left to the worker, off the one
/// thread every write waits for.
#[derive(Debug, Default)]
pub(crate) struct DueRows(Vec<(RawDelivery, Option<SealedSecret>)>);

impl DueRows {
    pub(crate) fn decode(self) -> Result<Vec<Claimed>, LedgerError> {
        self.0
            .into_iter()
            .map(|(delivery, sealed)| {
                Ok(Claimed {
                    delivery: finish_delivery(delivery)?,
                    sealed,
                })
            })
            .collect()
    }
}

impl Delivery {
    /// Whether a worker would send this row at `now`.
    #[cfg(test)]
    pub(crate) fn is_due(&self, now: i64) -> bool {
        self.state.is_waiting() && self.next_attempt_at <= now
    }
}

/// How many users one target receives without one field, and one reason as an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Omissions {
    pub target: String,
    pub field: String,
    pub users: u64,
    pub example: String,
}

/// Queue depth and lag of one target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct TargetLag {
    pub target: String,
    pub pending: u64,
    pub retrying: u64,
    pub rejected: u64,
    pub dead: u64,
    pub delivered: u64,
    /// Disables and deletes the deprovisioning guard holds back; above 0 the target is held.
    pub held: u64,
    /// When the oldest undelivered change was made, if any.
    pub oldest_change_at: Option<i64>,
    pub paused: bool,
    pub circuit: TargetCircuit,
}

/// How many columns `DELIVERY_COLUMNS` names.
const DELIVERY_COLUMN_COUNT: usize = 22;

pub(super) const DELIVERY_COLUMNS: &str = "user_id, target, operation, payload, create_only, password_field, \
    desired_hash, mapping_version, delivered_hash, remote_id, state, attempts, next_attempt_at, \
    last_status, last_error, changed_at, updated_at, secret_id, retain_secret, warnings, unmanaged, \
    failing_since";

/// A delivery as read, with the JSON columns still to decode: payload, create_only,
/// warnings (NULL when none) and unmanaged.
type RawDelivery = (Delivery, String, String, Option<String>, String);

fn read_delivery(row: &Row<'_>) -> rusqlite::Result<RawDelivery> {
    let delivery = Delivery {
        desired: Desired {
            user_id: row.get(0)?,
            target: row.get(1)?,
            operation: row.get(2)?,
            payload: Map::new(),
            create_only: Vec::new(),
            unmanaged: Vec::new(),
            password_field: row.get(5)?,
            secret_id: row.get(17)?,
            retain_secret: row.get(18)?,
            hash: row.get(6)?,
            mapping_version: row.get(7)?,
        },
        delivered_hash: row.get(8)?,
        remote_id: row.get(9)?,
        state: row.get(10)?,
        attempts: row.get(11)?,
        next_attempt_at: row.get(12)?,
        last_status: row.get(13)?,
        last_error: row.get(14)?,
        changed_at: row.get(15)?,
        updated_at: row.get(16)?,
        warnings: Vec::new(),
        failing_since: row.get(21)?,
    };
    Ok((
        delivery,
        row.get(3)?,
        row.get(4)?,
        row.get(19)?,
        row.get(20)?,
    ))
}

fn finish_delivery(
    (mut delivery, payload, create_only, warnings, unmanaged): RawDelivery,
) -> Result<Delivery, LedgerError> {
    delivery.desired.payload = serde_json::from_str(&payload)?;
    delivery.desired.create_only = serde_json::from_str(&create_only)?;
    delivery.desired.unmanaged = serde_json::from_str(&unmanaged)?;
    if let Some(warnings) = warnings {
        delivery.warnings = serde_json::from_str(&warnings)?;
    }
    Ok(delivery)
}

/// Users per (target, field) left out of their desired state, with one reason. Reads
/// only the rows that have warnings (`deliveries_warnings`, migration 6).
const OMISSIONS: &str = "SELECT d.target, w.value ->> '$.field', COUNT(*), \
    MAX(w.value ->> '$.reason') FROM deliveries d, json_each(d.warnings) w \
    WHERE d.warnings IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2";

impl Store<'_> {
    pub(super) fn deliveries(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(sql)?;
        let raw = stmt
            .query_map(params, read_delivery)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(finish_delivery).collect()
    }

    pub(crate) fn delivery(
        &self,
        user_id: &str,
        target: &str,
    ) -> Result<Option<Delivery>, LedgerError> {
        let sql =
            format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE user_id = ?1 AND target = ?2");
        Ok(self.deliveries(&sql, params![user_id, target])?.pop())
    }

    /// Records the state a target should reach. Returns true when the target now has
    /// something to receive. An unchanged desired state keeps the row as it is (including a
    /// rejection: nothing changed that could make the target accept it now).
    pub(crate) fn set_desired(&self, desired: &Desired, now: i64) -> Result<bool, LedgerError> {
        let current = self.delivery(&desired.user_id, &desired.target)?;
        if let Some(current) = &current {
            if current.desired.hash == desired.hash
                && current.desired.mapping_version == desired.mapping_version
            {
                if current.desired.retain_secret != desired.retain_secret
                    || current.desired.secret_id != desired.secret_id
                {
                    // Same state, but whether its password must be kept has changed.
                    self.conn()
                        .prepare_cached(
                            "UPDATE deliveries SET retain_secret = ?3, secret_id = ?4 \
                             WHERE user_id = ?1 AND target = ?2",
                        )?
                        .execute(params![
                            desired.user_id,
                            desired.target,
                            desired.retain_secret,
                            desired.secret_id
                        ])?;
                }
                return Ok(current.state.is_waiting());
            }
        }
        let already_there = current
            .as_ref()
            .and_then(|c| c.delivered_hash.as_ref())
            .is_some_and(|delivered| StateKey::already_holds(delivered, &desired.hash));
        let state = if already_there {
            DeliveryState::Delivered
        } else {
            DeliveryState::Pending
        };
        self.write_desired(desired, state, now)?;
        Ok(state == DeliveryState::Pending)
    }

    /// `set_desired` for a user the ledger has never seen (created in this transaction):
    /// nothing to compare with, so the state is simply pending.
    pub(crate) fn set_first_desired(
        &self,
        desired: &Desired,
        now: i64,
    ) -> Result<bool, LedgerError> {
        self.write_desired(desired, DeliveryState::Pending, now)?;
        Ok(true)
    }

    fn write_desired(
        &self,
        desired: &Desired,
        state: DeliveryState,
        now: i64,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO deliveries (user_id, target, operation, payload, create_only, \
                 password_field, desired_hash, mapping_version, state, attempts, next_attempt_at, \
                 changed_at, updated_at, secret_id, retain_secret, unmanaged) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?10, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (user_id, target) DO UPDATE SET operation = ?3, payload = ?4, \
                 create_only = ?5, password_field = ?6, desired_hash = ?7, mapping_version = ?8, \
                 state = ?9, attempts = 0, next_attempt_at = ?10, last_error = NULL, \
                 changed_at = ?10, updated_at = ?10, secret_id = ?11, retain_secret = ?12, \
                 unmanaged = ?13, failing_since = NULL, \
                 delivered_payload = CASE WHEN ?9 = 'delivered' THEN NULL \
                 WHEN delivered_payload IS NULL AND delivered_hash = desired_hash \
                 AND payload <> ?4 THEN payload ELSE delivered_payload END",
            )?
            .execute(params![
                desired.user_id,
                desired.target,
                desired.operation,
                serde_json::to_string(&desired.payload)?,
                serde_json::to_string(&desired.create_only)?,
                desired.password_field,
                desired.hash,
                desired.mapping_version,
                state,
                now,
                desired.secret_id,
                desired.retain_secret,
                serde_json::to_string(&desired.unmanaged)?,
            ])?;
        Ok(())
    }

    /// Keeps with the desired state the fields it leaves out; none clears them. A write
    /// only when they changed, so an unchanged user costs one indexed read.
    pub(crate) fn set_warnings(
        &self,
        user_id: &str,
        target: &str,
        warnings: &[FieldWarning],
    ) -> Result<(), LedgerError> {
        let json = if warnings.is_empty() {
            None
        } else {
            Some(serde_json::to_string(warnings)?)
        };
        self.conn()
            .prepare_cached(
                "UPDATE deliveries SET warnings = ?3 \
                 WHERE user_id = ?1 AND target = ?2 AND warnings IS NOT ?3",
            )?
            .execute(params![user_id, target, json])?;
        Ok(())
    }

    /// How many users each target receives without a field, per field, most first.
    pub(crate) fn omissions(&self) -> Result<Vec<Omissions>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(OMISSIONS)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(Omissions {
                    target: row.get(0)?,
                    field: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    users: row.get::<_, i64>(2)?.max(0) as u64,
                    example: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Records that the mapping cannot produce a valid payload for this user on this target:
    /// nothing is sent, and the reason waits in the ledger for an admin.
    pub(crate) fn set_mapping_rejection(
        &self,
        user_id: &str,
        target: &str,
        mapping_version: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), LedgerError> {
        let hash = StateKey::mapping_rejected(reason);
        self.conn()
            .prepare_cached(
                "INSERT INTO deliveries (user_id, target, operation, payload, create_only, \
                 desired_hash, mapping_version, state, attempts, next_attempt_at, last_error, \
                 changed_at, updated_at) \
                 VALUES (?1, ?2, 'upsert', '{}', '[]', ?3, ?4, 'rejected', 0, ?5, ?6, ?5, ?5) \
                 ON CONFLICT (user_id, target) DO UPDATE SET operation = 'upsert', payload = '{}', \
                 create_only = '[]', unmanaged = '[]', password_field = NULL, secret_id = NULL, desired_hash = ?3, \
                 mapping_version = ?4, state = 'rejected', attempts = 0, last_status = NULL, \
                 last_error = ?6, changed_at = ?5, updated_at = ?5, warnings = NULL, \
                 failing_since = NULL, delivered_payload = CASE WHEN delivered_payload IS NULL \
                 AND delivered_hash = desired_hash THEN payload ELSE delivered_payload END",
            )?
            .execute(params![user_id, target, hash, mapping_version, now, reason])?;
        Ok(())
    }

    /// Deliveries of `target` that are due at `now`, oldest first, each with everything its
    /// attempt needs, in one read: a worker sends them as read, without reading each row
    /// again. The users in `in_flight` are left out: their rows may be about to record an
    /// outcome this read does not see. The outcome write compares the state sent with the
    /// row's (see `record_attempt`).
    pub(crate) fn due(
        &self,
        target: &str,
        now: i64,
        limit: usize,
        in_flight: &HashSet<String>,
    ) -> Result<DueRows, LedgerError> {
        let columns = DELIVERY_COLUMNS
            .split(", ")
            .map(|column| format!("d.{}", column.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // The sealed password only where it can be sent: a target whose mapping takes one,
        // and an operation other than a delete.
        let sql = format!(
            "SELECT {columns}, s.secret_id, s.nonce, s.ciphertext FROM deliveries d \
             LEFT JOIN user_secrets s ON s.user_id = d.user_id \
             AND d.password_field IS NOT NULL AND d.operation != 'delete' \
             WHERE d.target = ?1 AND d.state IN ('pending', 'retrying') \
             AND d.next_attempt_at <= ?2 \
             AND d.user_id NOT IN (SELECT value FROM json_each(?4)) \
             ORDER BY d.next_attempt_at LIMIT ?3"
        );
        let in_flight = serde_json::to_string(in_flight)?;
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let raw = stmt
            .query_map(params![target, now, limit as i64, in_flight], |row| {
                let sealed = match row.get::<_, Option<String>>(DELIVERY_COLUMN_COUNT)? {
                    Some(secret_id) => Some(SealedSecret {
                        secret_id,
                        nonce: row.get(DELIVERY_COLUMN_COUNT + 1)?,
                        ciphertext: row.get(DELIVERY_COLUMN_COUNT + 2)?,
                    }),
                    None => None,
                };
                Ok((read_delivery(row)?, sealed))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(DueRows(raw))
    }

    /// First deliveries of `target` to come, counted up to `cap`: those waiting (an upsert
    /// with no account linked yet), and users created but not planned yet, who will have one
    /// unless the target's scope leaves them out. Reads at most `cap` rows of each.
    pub(crate) fn waiting_first_deliveries(
        &self,
        target: &str,
        cap: usize,
    ) -> Result<usize, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM deliveries \
             INDEXED BY deliveries_unlinked WHERE target = ?1 AND remote_id IS NULL \
             AND operation = 'upsert' AND state IN ('pending', 'retrying') LIMIT ?2)) \
             + (SELECT count(*) FROM (SELECT 1 FROM plan_queue WHERE new LIMIT ?2))",
        )?;
        let count: i64 = stmt.query_row(params![target, cap as i64], |row| row.get(0))?;
        Ok((count.max(0) as usize).min(cap))
    }

    /// When the next delivery of `target` falls due, if any is waiting.
    #[cfg(test)]
    pub(crate) fn next_due_at(&self, target: &str) -> Result<Option<i64>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE target = ?1 AND state IN ('pending', 'retrying')",
        )?;
        Ok(stmt.query_row([target], |row| row.get(0))?)
    }

    pub(crate) fn deliveries_of(&self, user_id: &str) -> Result<Vec<Delivery>, LedgerError> {
        let sql =
            format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE user_id = ?1 ORDER BY target");
        self.deliveries(&sql, [user_id])
    }

    /// Deliveries in the given states, optionally of one target, most recent first.
    pub(crate) fn deliveries_in(
        &self,
        states: &[DeliveryState],
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let states: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state IN ({}) \
             AND (?1 IS NULL OR target = ?1) ORDER BY updated_at DESC LIMIT ?2",
            states.join(", ")
        );
        self.deliveries(&sql, params![target, limit as i64])
    }

    /// Makes rejected or dead deliveries due again; returns how many.
    pub(crate) fn replay(
        &self,
        user_id: Option<&str>,
        target: Option<&str>,
        states: &[DeliveryState],
        now: i64,
    ) -> Result<usize, LedgerError> {
        let states: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?3, \
             updated_at = ?3, failing_since = NULL WHERE state IN ({}) \
             AND (?1 IS NULL OR user_id = ?1) \
             AND (?2 IS NULL OR target = ?2)",
            states.join(", ")
        );
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .execute(params![user_id, target, now])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{
        Attempt, AttemptOutcome, CircuitState, Db, DbOptions, SealedSecret, TargetCircuit,
    };

    /// The desired state of u1 on kibo, its payload called `name`.
    fn desired(name: &str) -> Desired {
        Desired {
            user_id: "u1".into(),
            target: "kibo".into(),
            operation: DeliveryOp::Upsert,
            payload: serde_json::json!({"emailAddress": "a@example.com"})
                .as_object()
                .cloned()
                .unwrap(),
            create_only: vec!["password".into()],
            unmanaged: Vec::new(),
            password_field: None,
            secret_id: None,
            retain_secret: false,
            hash: StateKey::sample(name),
            mapping_version: "m1".into(),
        }
    }

    fn attempt(key: StateKey, at: i64) -> Attempt {
        Attempt {
            at,
            user_id: "u1".into(),
            target: "kibo".into(),
            operation: "upsert".into(),
            status: None,
            duration_ms: 3,
            outcome: "x".into(),
            error: None,
            payload_hash: key,
            mapping_version: "m1".into(),
            sent: None,
        }
    }

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("t.db"),
            readers: 1,
        })
        .unwrap();
        (db, dir)
    }

    async fn run<T: Send + 'static>(
        db: &Db,
        work: impl FnOnce(&Store<'_>) -> Result<T, LedgerError> + Send + 'static,
    ) -> T {
        db.write(work).await.unwrap()
    }

    /// Kibo's due list at `now`, decoded, as a worker would claim it (up to 10 rows).
    async fn kibo_due(db: &Db, now: i64) -> Vec<Claimed> {
        run(db, move |s| {
            s.due("kibo", now, 10, &HashSet::new())?.decode()
        })
        .await
    }

    #[tokio::test]
    async fn waiting_first_deliveries_counts_unlinked_upserts_up_to_a_cap() {
        let (db, _dir) = db().await;
        let of = |user: &str, operation: DeliveryOp| Desired {
            user_id: user.into(),
            operation,
            ..desired(user)
        };
        for n in 0..5 {
            let want = of(&format!("u{n}"), DeliveryOp::Upsert);
            run(&db, move |s| s.set_desired(&want, 10)).await;
        }
        let disable = of("d1", DeliveryOp::Disable);
        run(&db, move |s| s.set_desired(&disable, 10)).await;
        // u0 gets its account: no longer a first delivery.
        let linked = AttemptOutcome::Delivered {
            remote_id: Some("r0".into()),
            status: None,
        };
        let mut sent = attempt(StateKey::sample("u0"), 20);
        sent.user_id = "u0".into();
        run(&db, move |s| s.record_attempt(&sent, &linked)).await;
        let count = |cap| run(&db, move |s| s.waiting_first_deliveries("kibo", cap));
        assert_eq!(count(100).await, 4);
        assert_eq!(count(3).await, 3);
        assert_eq!(
            run(&db, |s| s.waiting_first_deliveries("appgate", 100)).await,
            0
        );
        // Users created and still to be planned count for every target; others do not.
        run(&db, |s| {
            s.mark_for_planning("n1", None, true)?;
            s.mark_for_planning("n2", None, true)?;
            s.mark_for_planning("u0", None, false)
        })
        .await;
        assert_eq!(count(100).await, 6);
        assert_eq!(count(5).await, 5);
        assert_eq!(
            run(&db, |s| s.waiting_first_deliveries("appgate", 100)).await,
            2
        );
    }

    #[tokio::test]
    async fn level_triggered_lifecycle() {
        let (db, _dir) = db().await;
        assert!(run(&db, |s| s.set_desired(&desired("h1"), 10)).await);
        let due = kibo_due(&db, 10).await;
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].delivery.desired.create_only,
            vec!["password".to_owned()]
        );

        // Ten updates while the target is down coalesce into the latest desired state.
        for n in 2..=11 {
            let hash = format!("h{n}");
            run(&db, move |s| s.set_desired(&desired(&hash), 20)).await;
        }
        let due = kibo_due(&db, 20).await;
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].delivery.desired.hash, StateKey::sample("h11"));

        let delivered = AttemptOutcome::Delivered {
            remote_id: Some("r1".into()),
            status: Some(200),
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h11"), 30), &delivered)
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("r1"));
        assert!(kibo_due(&db, 40).await.is_empty());

        // The same state again is not sent again.
        assert!(!run(&db, |s| s.set_desired(&desired("h11"), 50)).await);
        assert_eq!(run(&db, |s| s.history("u1", None, 10)).await.len(), 1);
    }

    #[tokio::test]
    async fn a_stored_key_no_build_wrote_is_an_error_naming_it() {
        let (db, _dir) = db().await;
        run(&db, |s| s.set_desired(&desired("h"), 1)).await;
        let bad = "upsert:h1";
        run(&db, move |s| {
            s.conn().execute(
                "UPDATE deliveries SET desired_hash = ?1 WHERE user_id = 'u1'",
                [bad],
            )?;
            Ok(())
        })
        .await;
        let err = db
            .read(|s| s.delivery("u1", "kibo"))
            .await
            .expect_err("a malformed key is not read as some state");
        assert!(err.to_string().contains("\"upsert:h1\""), "{err}");
    }

    #[tokio::test]
    async fn an_attempt_for_an_older_state_leaves_the_newer_one_due() {
        let (db, _dir) = db().await;
        run(&db, |s| s.set_desired(&desired("old"), 1)).await;
        run(&db, |s| s.set_desired(&desired("new"), 2)).await;
        let rejected = AttemptOutcome::Rejected {
            status: Some(400),
            error: "bad".into(),
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("old"), 3), &rejected)
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!(row.state, DeliveryState::Pending);
        assert_eq!(kibo_due(&db, 3).await.len(), 1);
    }

    #[tokio::test]
    async fn retries_rejections_replay_and_lag() {
        let (db, _dir) = db().await;
        run(&db, |s| s.set_desired(&desired("h"), 100)).await;
        let retry = AttemptOutcome::Retry {
            status: Some(503),
            error: "unavailable".into(),
            next_attempt_at: 500,
            charged: true,
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 110), &retry)
        })
        .await;
        assert!(kibo_due(&db, 499).await.is_empty(), "not before its time");
        assert_eq!(kibo_due(&db, 500).await.len(), 1);
        assert_eq!(run(&db, |s| s.next_due_at("kibo")).await, Some(500));

        let rejected = AttemptOutcome::Rejected {
            status: Some(422),
            error: "lastName is required".into(),
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 600), &rejected)
        })
        .await;
        let lag = run(&db, |s| s.lag("kibo")).await;
        assert_eq!((lag.rejected, lag.oldest_change_at), (1, Some(100)));
        let failed = run(&db, |s| {
            s.deliveries_in(&[DeliveryState::Rejected, DeliveryState::Dead], None, 10)
        })
        .await;
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some("lastName is required")
        );
        assert!(kibo_due(&db, 10_000).await.is_empty(), "rejections wait");

        let replayed = run(&db, |s| {
            s.replay(Some("u1"), None, &[DeliveryState::Rejected], 700)
        })
        .await;
        assert_eq!(replayed, 1);
        assert_eq!(kibo_due(&db, 700).await.len(), 1);
    }

    #[tokio::test]
    async fn secrets_are_erased_once_every_carrier_delivered() {
        let (db, _dir) = db().await;
        let sealed = SealedSecret {
            secret_id: "s1".into(),
            nonce: vec![0; 12],
            ciphertext: vec![1, 2, 3],
        };
        let mut with_password = desired("h");
        with_password.hash = StateKey::sample("h").with_password("s1");
        let sent = with_password.hash.clone();
        with_password.password_field = Some("password".into());
        with_password.secret_id = Some("s1".into());
        let mut other = with_password.clone();
        other.target = "appgate".into();
        run(&db, move |s| {
            s.store_secret("u1", &sealed, 1)?;
            s.set_desired(&with_password, 1)?;
            s.set_desired(&other, 1)
        })
        .await;
        let delivered = AttemptOutcome::Delivered {
            remote_id: Some("r".into()),
            status: None,
        };
        let first = delivered.clone();
        let first_sent = attempt(sent.clone(), 2);
        assert!(
            !run(&db, move |s| {
                s.record_attempt(&first_sent, &first)?;
                s.erase_secret_if_delivered("u1")
            })
            .await
        );
        assert!(
            run(&db, |s| s.secret("u1")).await.is_some(),
            "appgate still needs it"
        );
        let mut second = attempt(sent, 3);
        second.target = "appgate".into();
        assert!(
            run(&db, move |s| {
                s.record_attempt(&second, &delivered)?;
                s.erase_secret_if_delivered("u1")
            })
            .await
        );
        assert!(run(&db, |s| s.secret("u1")).await.is_none());
    }

    #[tokio::test]
    async fn a_claim_carries_the_sealed_password_only_where_it_can_be_sent() {
        assert_eq!(
            DELIVERY_COLUMNS.split(", ").count(),
            DELIVERY_COLUMN_COUNT,
            "the claim reads the password after the row's columns"
        );
        let (db, _dir) = db().await;
        let sealed = SealedSecret {
            secret_id: "s1".into(),
            nonce: vec![0; 12],
            ciphertext: vec![1, 2, 3],
        };
        let stored = sealed.clone();
        let mut takes_it = desired("h");
        takes_it.password_field = Some("password".into());
        takes_it.secret_id = Some("s1".into());
        let mut takes_none = desired("h");
        takes_none.target = "appgate".into();
        let mut deleted = takes_it.clone();
        deleted.target = "primavera".into();
        deleted.operation = DeliveryOp::Delete;
        run(&db, move |s| {
            s.store_secret("u1", &stored, 1)?;
            s.set_desired(&takes_it, 1)?;
            s.set_desired(&takes_none, 1)?;
            s.set_desired(&deleted, 1)
        })
        .await;
        let claimed = |target: &'static str| {
            let db = db.clone();
            async move {
                let mut due = db
                    .read(move |s| s.due(target, 10, 10, &HashSet::new())?.decode())
                    .await
                    .unwrap();
                assert_eq!(due.len(), 1, "{target}");
                due.remove(0)
            }
        };
        let kibo = claimed("kibo").await;
        assert_eq!(kibo.sealed, Some(sealed));
        assert_eq!(kibo.delivery.desired.secret_id.as_deref(), Some("s1"));
        assert_eq!(claimed("appgate").await.sealed, None, "no password field");
        assert_eq!(
            claimed("primavera").await.sealed,
            None,
            "a delete sends none"
        );
    }

    fn warning(field: &str, value: &str) -> FieldWarning {
        FieldWarning {
            field: field.into(),
            value: value.into(),
            reason: format!("'{value}' is not a readable phone number"),
        }
    }

    #[tokio::test]
    async fn warnings_stay_with_the_desired_state_and_are_counted_per_field() {
        let (db, _dir) = db().await;
        run(&db, |s| {
            s.set_desired(&desired("h"), 1)?;
            s.set_warnings("u1", "kibo", &[warning("phoneNumber", "call me")])?;
            let mut other = desired("h");
            other.user_id = "u2".into();
            s.set_desired(&other, 1)?;
            s.set_warnings(
                "u2",
                "kibo",
                &[warning("phoneNumber", "12"), warning("localeCode", "xx")],
            )?;
            let mut elsewhere = other.clone();
            elsewhere.target = "appgate".into();
            s.set_desired(&elsewhere, 1)?;
            s.set_warnings("u2", "appgate", &[warning("phone", "12")])
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!(row.warnings, [warning("phoneNumber", "call me")]);
        let counts = run(&db, |s| s.omissions()).await;
        let counted: Vec<(&str, &str, u64)> = counts
            .iter()
            .map(|o| (o.target.as_str(), o.field.as_str(), o.users))
            .collect();
        assert_eq!(
            counted,
            [
                ("appgate", "phone", 1),
                ("kibo", "phoneNumber", 2),
                ("kibo", "localeCode", 1)
            ]
        );
        assert!(counts[1].example.contains("is not a readable phone number"));

        // Fixed at the source: the warning goes; a mapping rejection leaves none behind.
        run(&db, |s| {
            s.set_warnings("u1", "kibo", &[])?;
            s.set_mapping_rejection("u2", "kibo", "m1", "no email", 2)
        })
        .await;
        assert!(run(&db, |s| s.delivery("u1", "kibo"))
            .await
            .unwrap()
            .warnings
            .is_empty());
        let counts = run(&db, |s| s.omissions()).await;
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!(counts[0].target, "appgate");
    }

    #[tokio::test]
    async fn omission_counts_read_only_rows_with_warnings() {
        let (db, _dir) = db().await;
        let plan = run(&db, |s| {
            let mut stmt = s
                .conn()
                .prepare(&format!("EXPLAIN QUERY PLAN {OMISSIONS}"))?;
            let steps = stmt
                .query_map([], |row| row.get::<_, String>(3))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(steps.join("; "))
        })
        .await;
        assert!(plan.contains("INDEX deliveries_warnings"), "{plan}");
    }

    #[tokio::test]
    async fn uncharged_failures_keep_the_count_and_failing_since_dates_the_first() {
        let (db, _dir) = db().await;
        run(&db, |s| s.set_desired(&desired("h"), 100)).await;
        let retry = |charged, next_attempt_at| AttemptOutcome::Retry {
            status: Some(503),
            error: "down".into(),
            next_attempt_at,
            charged,
        };
        let first = retry(true, 200);
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 110), &first)
        })
        .await;
        let second = retry(false, 300);
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 210), &second)
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!(
            (row.attempts, row.failing_since, row.last_status),
            (1, Some(110), Some(503))
        );
        let history = run(&db, |s| s.history("u1", None, 10)).await;
        assert_eq!(history.len(), 2);

        // Dead, then replayed: the count and the age start over.
        let dead = AttemptOutcome::Dead {
            status: Some(503),
            error: "gave up".into(),
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 310), &dead)
        })
        .await;
        run(&db, |s| {
            s.replay(None, Some("kibo"), &[DeliveryState::Dead], 400)
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!((row.attempts, row.failing_since), (0, None));
        let third = retry(true, 500);
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 410), &third)
        })
        .await;
        let delivered = AttemptOutcome::Delivered {
            remote_id: Some("r".into()),
            status: None,
        };
        run(&db, move |s| {
            s.record_attempt(&attempt(StateKey::sample("h"), 510), &delivered)
        })
        .await;
        let row = run(&db, |s| s.delivery("u1", "kibo")).await.unwrap();
        assert_eq!((row.attempts, row.failing_since), (0, None));
    }

    #[tokio::test]
    async fn a_targets_circuit_is_kept_and_shown_with_its_lag() {
        let (db, _dir) = db().await;
        assert_eq!(run(&db, |s| s.circuit("kibo")).await, None);
        assert_eq!(
            run(&db, |s| s.lag("kibo")).await.circuit.state,
            CircuitState::Closed
        );
        let open = TargetCircuit {
            state: CircuitState::Open,
            failures: 5,
            failed_probes: 2,
            opened_at: Some(10),
            retry_at: Some(70),
            last_status: Some(429),
            last_error: Some("429: slow down".into()),
            updated_at: 40,
        };
        let stored = open.clone();
        run(&db, move |s| s.set_circuit("kibo", &stored)).await;
        assert_eq!(run(&db, |s| s.circuit("kibo")).await, Some(open.clone()));
        assert_eq!(run(&db, |s| s.lag("kibo")).await.circuit, open);
        let closed = TargetCircuit {
            updated_at: 80,
            ..TargetCircuit::default()
        };
        run(&db, move |s| s.set_circuit("kibo", &closed)).await;
        assert_eq!(
            run(&db, |s| s.lag("kibo")).await.circuit.state,
            CircuitState::Closed
        );
    }

    #[tokio::test]
    async fn pause_switch() {
        let (db, _dir) = db().await;
        assert!(!run(&db, |s| s.is_paused("kibo")).await);
        run(&db, |s| s.set_paused("kibo", true)).await;
        assert!(run(&db, |s| s.is_paused("kibo")).await);
        assert!(run(&db, |s| s.lag("kibo")).await.paused);
    }
}
