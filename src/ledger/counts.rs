//! Queue depth and lag per target, read by /metrics, the admin API, the CLI and the console:
//! from the counters the database keeps (`delivery_counts`, migration 12) and the oldest
//! change per state from an index, so a scrape costs the same at any ledger size.

use super::deliveries::TargetLag;
use super::lifecycle::DeliveryState;
use super::{LedgerError, Store};

/// Rows per state of one target, as the triggers on `deliveries` keep them.
const COUNTS: &str = "SELECT state, n FROM delivery_counts WHERE target = ?1";

/// The oldest change a target has not received. One `MIN` per state, each the first entry
/// of that state's range in `deliveries_state` (target, state, changed_at): a `MIN` over
/// several states at once would read every entry of them.
const OLDEST_UNDELIVERED: &str = "SELECT MIN(at) FROM (\
    SELECT MIN(changed_at) AS at FROM deliveries WHERE target = ?1 AND state = 'pending' \
    UNION ALL SELECT MIN(changed_at) FROM deliveries WHERE target = ?1 AND state = 'retrying' \
    UNION ALL SELECT MIN(changed_at) FROM deliveries WHERE target = ?1 AND state = 'rejected' \
    UNION ALL SELECT MIN(changed_at) FROM deliveries WHERE target = ?1 AND state = 'dead' \
    UNION ALL SELECT MIN(changed_at) FROM deliveries WHERE target = ?1 AND state = 'held')";

impl Store<'_> {
    pub(crate) fn lag(&self, target: &str) -> Result<TargetLag, LedgerError> {
        let mut lag = TargetLag {
            target: target.to_owned(),
            paused: self.is_paused(target)?,
            circuit: self.circuit(target)?.unwrap_or_default(),
            oldest_change_at: self
                .conn()
                .prepare_cached(OLDEST_UNDELIVERED)?
                .query_row([target], |row| row.get(0))?,
            ..TargetLag::default()
        };
        let mut stmt = self.conn().prepare_cached(COUNTS)?;
        let rows = stmt
            .query_map([target], |row| {
                Ok((row.get::<_, DeliveryState>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (state, count) in rows {
            let count = count.max(0) as u64;
            match state {
                DeliveryState::Pending => lag.pending = count,
                DeliveryState::Retrying => lag.retrying = count,
                DeliveryState::Rejected => lag.rejected = count,
                DeliveryState::Dead => lag.dead = count,
                DeliveryState::Delivered => lag.delivered = count,
                DeliveryState::Held => lag.held = count,
            }
        }
        Ok(lag)
    }

    /// Rows of `target` in `state`, from the counters.
    pub(crate) fn count_in_state(
        &self,
        target: &str,
        state: DeliveryState,
    ) -> Result<u64, LedgerError> {
        let count: Option<i64> = self
            .conn()
            .prepare_cached("SELECT n FROM delivery_counts WHERE target = ?1 AND state = ?2")?
            .query_row(rusqlite::params![target, state], |row| row.get(0))
            .map(Some)
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                err => Err(err),
            })?;
        Ok(count.unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rusqlite::{params, Connection};

    use super::*;
    use crate::ledger::migrations;

    const TARGETS: [&str; 2] = ["kibo", "appgate"];
    const STATES: [&str; 6] = [
        "pending",
        "retrying",
        "delivered",
        "rejected",
        "dead",
        "held",
    ];

    fn ledger() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::run(&mut conn).unwrap();
        conn
    }

    /// Writes a row the way the bridge does: an upsert on (user, target).
    fn upsert(conn: &Connection, user: usize, target: &str, state: &str, changed_at: i64) {
        conn.execute(
            "INSERT INTO deliveries (user_id, target, operation, payload, create_only, \
             desired_hash, mapping_version, state, next_attempt_at, changed_at, updated_at) \
             VALUES (?1, ?2, 'upsert', '{}', '[]', 'h', 'm', ?3, ?4, ?4, ?4) \
             ON CONFLICT (user_id, target) DO UPDATE SET state = ?3, changed_at = ?4",
            params![format!("u{user}"), target, state, changed_at],
        )
        .unwrap();
    }

    /// Rows per (target, state).
    type Counts = BTreeMap<(String, String), i64>;

    /// The counters as kept, and as a full count finds them, zero counts left out.
    fn kept_and_counted(conn: &Connection) -> (Counts, Counts) {
        let read = |sql: &str| -> Counts {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        (
            read("SELECT target, state, n FROM delivery_counts WHERE n <> 0"),
            read("SELECT target, state, COUNT(*) FROM deliveries GROUP BY 1, 2"),
        )
    }

    #[derive(Debug, Clone)]
    enum Step {
        Upsert {
            user: usize,
            target: usize,
            state: usize,
        },
        SetState {
            user: usize,
            target: usize,
            state: usize,
        },
        SetStateOfTarget {
            target: usize,
            from: usize,
            to: usize,
        },
        Touch {
            user: usize,
            target: usize,
        },
        Delete {
            user: usize,
            target: usize,
        },
        Retarget {
            user: usize,
            from: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        let (user, target, state) = (0..12usize, 0..TARGETS.len(), 0..STATES.len());
        prop_oneof![
            (user.clone(), target.clone(), state.clone()).prop_map(|(user, target, state)| {
                Step::Upsert {
                    user,
                    target,
                    state,
                }
            }),
            (user.clone(), target.clone(), state.clone()).prop_map(|(user, target, state)| {
                Step::SetState {
                    user,
                    target,
                    state,
                }
            }),
            (target.clone(), state.clone(), state)
                .prop_map(|(target, from, to)| Step::SetStateOfTarget { target, from, to }),
            (user.clone(), target.clone()).prop_map(|(user, target)| Step::Touch { user, target }),
            (user.clone(), target.clone()).prop_map(|(user, target)| Step::Delete { user, target }),
            (user, target).prop_map(|(user, from)| Step::Retarget { user, from }),
        ]
    }

    proptest! {
        #[test]
        fn the_counters_equal_a_full_count_after_any_writes(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            let conn = ledger();
            for (at, step) in steps.into_iter().enumerate() {
                let at = at as i64;
                match step {
                    Step::Upsert { user, target, state } => {
                        upsert(&conn, user, TARGETS[target], STATES[state], at);
                    }
                    Step::SetState { user, target, state } => {
                        conn.execute(
                            "UPDATE deliveries SET state = ?3, updated_at = ?4 \
                             WHERE user_id = ?1 AND target = ?2",
                            params![format!("u{user}"), TARGETS[target], STATES[state], at],
                        ).unwrap();
                    }
                    Step::SetStateOfTarget { target, from, to } => {
                        conn.execute(
                            "UPDATE deliveries SET state = ?3 WHERE target = ?1 AND state = ?2",
                            params![TARGETS[target], STATES[from], STATES[to]],
                        ).unwrap();
                    }
                    Step::Touch { user, target } => {
                        conn.execute(
                            "UPDATE deliveries SET attempts = attempts + 1 \
                             WHERE user_id = ?1 AND target = ?2",
                            params![format!("u{user}"), TARGETS[target]],
                        ).unwrap();
                    }
                    Step::Delete { user, target } => {
                        conn.execute(
                            "DELETE FROM deliveries WHERE user_id = ?1 AND target = ?2",
                            params![format!("u{user}"), TARGETS[target]],
                        ).unwrap();
                    }
                    Step::Retarget { user, from } => {
                        // OR IGNORE: the user may already have a row on the other target.
                        conn.execute(
                            "UPDATE OR IGNORE deliveries SET target = ?3 \
                             WHERE user_id = ?1 AND target = ?2",
                            params![format!("u{user}"), TARGETS[from], TARGETS[1 - from]],
                        ).unwrap();
                    }
                }
                let (kept, counted) = kept_and_counted(&conn);
                prop_assert_eq!(kept, counted);
            }
        }
    }

    #[test]
    fn the_migration_counts_the_rows_already_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        // Up to migration 12, which fills the counters.
        let before = 11;
        for sql in &migrations::MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {before}"))
            .unwrap();
        for (user, state) in ["pending", "pending", "delivered", "dead"]
            .iter()
            .enumerate()
        {
            upsert(&conn, user, "kibo", state, 5);
        }
        upsert(&conn, 0, "appgate", "held", 5);
        migrations::run(&mut conn).unwrap();
        let (kept, counted) = kept_and_counted(&conn);
        assert_eq!(kept, counted);
        assert_eq!(kept.len(), 4, "{kept:?}");
    }

    #[test]
    fn lag_reads_the_counters_and_the_oldest_undelivered_change() {
        let conn = ledger();
        upsert(&conn, 0, "kibo", "delivered", 1);
        upsert(&conn, 1, "kibo", "dead", 40);
        upsert(&conn, 2, "kibo", "pending", 30);
        upsert(&conn, 3, "kibo", "held", 20);
        upsert(&conn, 4, "kibo", "pending", 50);
        upsert(&conn, 0, "appgate", "retrying", 10);
        let lag = Store::new(&conn).lag("kibo").unwrap();
        assert_eq!(
            (
                lag.pending,
                lag.retrying,
                lag.rejected,
                lag.dead,
                lag.delivered,
                lag.held
            ),
            (2, 0, 0, 1, 1, 1)
        );
        assert_eq!(lag.oldest_change_at, Some(20));
        assert_eq!(
            Store::new(&conn).lag("appgate").unwrap().oldest_change_at,
            Some(10)
        );
        let none = Store::new(&conn).lag("vikingcloud").unwrap();
        assert_eq!((none.pending, none.oldest_change_at), (0, None));
        assert_eq!(
            Store::new(&conn)
                .count_in_state("kibo", DeliveryState::Held)
                .unwrap(),
            1
        );
        assert_eq!(
            Store::new(&conn)
                .count_in_state("kibo", DeliveryState::Rejected)
                .unwrap(),
            0
        );
    }

    /// The work of one `lag` in SQLite's virtual machine steps: the same with 20 rows as
    /// with 20,000, where counting rows took steps in proportion.
    #[test]
    fn lag_costs_the_same_at_any_ledger_size() {
        let steps = |rows: usize| {
            let conn = ledger();
            conn.execute_batch("BEGIN").unwrap();
            for user in 0..rows {
                let state = STATES[user % STATES.len()];
                upsert(&conn, user, "kibo", state, user as i64);
            }
            conn.execute_batch("COMMIT").unwrap();
            let mut total = 0;
            for sql in [COUNTS, OLDEST_UNDELIVERED] {
                let mut stmt = conn.prepare(sql).unwrap();
                let mut rows = stmt.query(["kibo"]).unwrap();
                while rows.next().unwrap().is_some() {}
                drop(rows);
                total += stmt.get_status(rusqlite::StatementStatus::VmStep);
            }
            total
        };
        let (small, large) = (steps(20), steps(20_000));
        assert!(
            large <= small + 10,
            "{small} steps at 20 rows, {large} at 20,000"
        );
    }
}
