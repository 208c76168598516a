//! The deprovisioning guard's marks in the ledger (migration 9): the disables and deletes it
//! let through per target, the ones it holds (`held` rows), and an operator's release or
//! discard of them. The decision itself is `fanout/guard.rs`; it runs inside one write.

use rusqlite::params;

use super::{Delivery, DeliveryState, LedgerError, Store};

/// What the guard's window of one target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GuardWindow {
    /// Deprovisions the guard let through in the window (released ones not counted).
    pub sent: u64,
    /// Of those, deletes: their accounts no longer count among the target's accounts.
    pub deleted: u64,
}

/// Deprovisions (and of them deletes) let through in a window, from `guard_grants_window`.
const GUARD_WINDOW: &str = "SELECT COUNT(*), COALESCE(SUM(operation = 'delete'), 0) \
    FROM guard_grants WHERE target = ?1 AND granted_at > ?2 AND counted = 1";

/// Accounts linked on a target, from the partial index `deliveries_linked` alone: asked for
/// every deprovision the guard counts, at a million users too.
const LINKED_ACCOUNTS: &str =
    "SELECT COUNT(*) FROM deliveries WHERE target = ?1 AND remote_id IS NOT NULL";

impl Store<'_> {
    /// Whether the guard already let this very desired state through: a retry of a sent
    /// deprovision, or one an operator released. Neither is counted or held again.
    pub(crate) fn guard_granted(&self, delivery: &Delivery) -> Result<bool, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT COUNT(*) FROM guard_grants WHERE target = ?1 AND user_id = ?2 \
             AND desired_hash = ?3 AND changed_at = ?4",
        )?;
        let found: i64 = stmt.query_row(
            params![
                delivery.desired.target,
                delivery.desired.user_id,
                delivery.desired.hash,
                delivery.changed_at
            ],
            |row| row.get(0),
        )?;
        Ok(found > 0)
    }

    /// How many deprovisions of `target` the guard holds now, from the counters.
    pub(crate) fn held_count(&self, target: &str) -> Result<u64, LedgerError> {
        self.count_in_state(target, DeliveryState::Held)
    }

    /// The deprovisions let through after `since` and since an operator last released or
    /// discarded.
    pub(crate) fn guard_window(
        &self,
        target: &str,
        since: i64,
    ) -> Result<GuardWindow, LedgerError> {
        let mut stmt = self.conn().prepare_cached(GUARD_WINDOW)?;
        let (sent, deleted) = stmt.query_row(params![target, since], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })?;
        Ok(GuardWindow {
            sent: sent.max(0) as u64,
            deleted: deleted.max(0) as u64,
        })
    }

    /// The accounts the bridge holds on `target` (linked to a user).
    pub(crate) fn linked_accounts(&self, target: &str) -> Result<u64, LedgerError> {
        let mut stmt = self.conn().prepare_cached(LINKED_ACCOUNTS)?;
        Ok(stmt.query_row([target], |row| row.get::<_, i64>(0))?.max(0) as u64)
    }

    /// Records that the guard lets this deprovision through at `now`.
    pub(crate) fn grant_deprovision(
        &self,
        delivery: &Delivery,
        now: i64,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO guard_grants (target, user_id, desired_hash, changed_at, operation, \
                 granted_at, counted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1) \
                 ON CONFLICT (target, user_id) DO UPDATE SET desired_hash = ?3, changed_at = ?4, \
                 operation = ?5, granted_at = ?6, counted = 1",
            )?
            .execute(params![
                delivery.desired.target,
                delivery.desired.user_id,
                delivery.desired.hash,
                delivery.changed_at,
                delivery.desired.operation,
                now
            ])?;
        Ok(())
    }

    /// Holds this deprovision: its row leaves the due list until an operator acts. A row
    /// whose desired state moved on meanwhile is left alone (its new state is due).
    pub(crate) fn hold(&self, delivery: &Delivery, now: i64) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "UPDATE deliveries SET state = 'held', updated_at = ?4 \
                 WHERE user_id = ?1 AND target = ?2 AND desired_hash = ?3 \
                 AND state IN ('pending', 'retrying')",
            )?
            .execute(params![
                delivery.desired.user_id,
                delivery.desired.target,
                delivery.desired.hash,
                now
            ])?;
        Ok(())
    }

    /// Makes every held deprovision of `target` due now, each let through once by the guard,
    /// and starts the guard's window afresh. Returns how many.
    pub(crate) fn release_held(&self, target: &str, now: i64) -> Result<usize, LedgerError> {
        self.reset_guard(target)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO guard_grants (target, user_id, desired_hash, changed_at, operation, \
                 granted_at, counted) \
                 SELECT target, user_id, desired_hash, changed_at, operation, ?2, 0 \
                 FROM deliveries WHERE target = ?1 AND state = 'held' \
                 ON CONFLICT (target, user_id) DO UPDATE SET \
                 desired_hash = excluded.desired_hash, changed_at = excluded.changed_at, \
                 operation = excluded.operation, granted_at = ?2, counted = 0",
            )?
            .execute(params![target, now])?;
        let released = self
            .conn()
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, updated_at = ?2 \
                 WHERE target = ?1 AND state = 'held'",
            )?
            .execute(params![target, now])?;
        Ok(released)
    }

    /// Drops every held deprovision of `target` unsent: the ledger takes the target to hold
    /// the deprovisioned state, so a later re-activation goes out as an ordinary update.
    /// Each user's history says so; the guard's window starts afresh. Returns how many.
    pub(crate) fn discard_held(
        &self,
        target: &str,
        note: &str,
        now: i64,
    ) -> Result<usize, LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO delivery_attempts (at, user_id, target, operation, status, \
                 duration_ms, outcome, error, payload_hash, mapping_version) \
                 SELECT ?2, user_id, target, operation, NULL, 0, 'discarded', ?3, \
                 desired_hash, mapping_version FROM deliveries \
                 WHERE target = ?1 AND state = 'held'",
            )?
            .execute(params![target, now, note])?;
        let discarded = self
            .conn()
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', delivered_hash = desired_hash, \
                 delivered_payload = NULL, \
                 attempts = 0, last_status = NULL, last_error = ?3, failing_since = NULL, \
                 updated_at = ?2 WHERE target = ?1 AND state = 'held'",
            )?
            .execute(params![target, now, note])?;
        self.reset_guard(target)?;
        Ok(discarded)
    }

    /// Starts the guard's window of `target` afresh: what it let through before an
    /// operator's review no longer counts toward the next hold.
    fn reset_guard(&self, target: &str) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "UPDATE guard_grants SET counted = 0 WHERE target = ?1 AND counted = 1",
            )?
            .execute([target])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Db, DbOptions};

    #[tokio::test]
    async fn the_guards_counts_read_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("h.db"),
            readers: 1,
        })
        .unwrap();
        let plans = db
            .read(|s| {
                [
                    (LINKED_ACCOUNTS, params!["kibo"]),
                    (GUARD_WINDOW, params!["kibo", 0]),
                ]
                .into_iter()
                .map(|(sql, values)| {
                    let mut stmt = s.conn().prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let steps = stmt
                        .query_map(values, |row| row.get::<_, String>(3))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(steps.join("; "))
                })
                .collect::<Result<Vec<_>, LedgerError>>()
            })
            .await
            .unwrap();
        assert!(
            plans[0].contains("COVERING INDEX deliveries_linked"),
            "{}",
            plans[0]
        );
        assert!(
            plans[1].contains("INDEX guard_grants_window"),
            "{}",
            plans[1]
        );
    }
}
