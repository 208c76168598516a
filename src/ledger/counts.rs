//! Queue depth and lag per target, read by /metrics, the admin API, the CLI and the console:
//! from the counters the database keeps (`delivery_counts`, migration 12) and the oldest
//! change per state from an index, so a scrape costs the same at any ledger size.
//!
//! Triggers keep the counters on every connection but the writer's. The writer notes the
//! rows it changes in memory (`sqlite/row_counts.rs`) and `add_to_counters` adds a batch's
//! to them just before it commits; a count read on the writer adds what is still pending.

use rusqlite::Connection;

use super::deliveries::TargetLag;
use super::lifecycle::DeliveryState;
use super::sqlite::RowChanges;
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

/// Adds a writer's changes to a target's count of rows in a state.
const ADD_TO_COUNT: &str = "INSERT INTO delivery_counts (target, state, n) VALUES (?1, ?2, ?3) \
     ON CONFLICT (target, state) DO UPDATE SET n = n + excluded.n";

/// Adds a batch's changes, as the writer noted them, to the counters. Part of the batch's
/// transaction, so they are committed or rolled back with the rows they count.
pub(super) fn add_to_counters(conn: &Connection, changes: RowChanges) -> Result<(), LedgerError> {
    if changes.unreadable {
        return Err(uncountable());
    }
    for (target, state, by) in changes.deliveries.iter().filter(|c| c.2 != 0) {
        conn.prepare_cached(ADD_TO_COUNT)?
            .execute(rusqlite::params![target, state, by])?;
    }
    if changes.plan_queue != 0 {
        conn.prepare_cached("UPDATE plan_queue_count SET n = n + ?1 WHERE id = 1")?
            .execute([changes.plan_queue])?;
    }
    Ok(())
}

/// The writer's hook met a changed row of `deliveries` it could not read: its counts would
/// be wrong, so neither a count nor the batch is given out.
fn uncountable() -> LedgerError {
    LedgerError::Commit("a changed row of deliveries could not be read to count it".into())
}

impl Store<'_> {
    /// On the writer, the rows of `target` in `state` its batch added or removed and has
    /// not yet counted (`sqlite/row_counts.rs`); 0 on any other connection.
    pub(super) fn pending_rows(
        &self,
        target: &str,
        state: DeliveryState,
    ) -> Result<i64, LedgerError> {
        match self.counter() {
            None => Ok(0),
            Some(counter) => counter
                .pending_rows(target, state.as_str())
                .ok_or_else(uncountable),
        }
    }

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
        for state in DeliveryState::ALL {
            let kept = rows
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            let count = (kept + self.pending_rows(target, state)?).max(0) as u64;
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
        Ok((count.unwrap_or(0) + self.pending_rows(target, state)?).max(0) as u64)
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

    /// Applies one step as the bridge's statements would.
    fn apply(conn: &Connection, at: i64, step: &Step) {
        match *step {
            Step::Upsert {
                user,
                target,
                state,
            } => {
                upsert(conn, user, TARGETS[target], STATES[state], at);
            }
            Step::SetState {
                user,
                target,
                state,
            } => {
                conn.execute(
                    "UPDATE deliveries SET state = ?3, updated_at = ?4 \
                 WHERE user_id = ?1 AND target = ?2",
                    params![format!("u{user}"), TARGETS[target], STATES[state], at],
                )
                .unwrap();
            }
            Step::SetStateOfTarget { target, from, to } => {
                conn.execute(
                    "UPDATE deliveries SET state = ?3 WHERE target = ?1 AND state = ?2",
                    params![TARGETS[target], STATES[from], STATES[to]],
                )
                .unwrap();
            }
            Step::Touch { user, target } => {
                conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1 \
                 WHERE user_id = ?1 AND target = ?2",
                    params![format!("u{user}"), TARGETS[target]],
                )
                .unwrap();
            }
            Step::Delete { user, target } => {
                conn.execute(
                    "DELETE FROM deliveries WHERE user_id = ?1 AND target = ?2",
                    params![format!("u{user}"), TARGETS[target]],
                )
                .unwrap();
            }
            Step::Retarget { user, from } => {
                // OR IGNORE: the user may already have a row on the other target.
                conn.execute(
                    "UPDATE OR IGNORE deliveries SET target = ?3 \
                 WHERE user_id = ?1 AND target = ?2",
                    params![format!("u{user}"), TARGETS[from], TARGETS[1 - from]],
                )
                .unwrap();
            }
        }
    }

    proptest! {
        #[test]
        fn the_counters_equal_a_full_count_after_any_writes(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            let conn = ledger();
            for (at, step) in steps.iter().enumerate() {
                apply(&conn, at as i64, step);
                let (kept, counted) = kept_and_counted(&conn);
                prop_assert_eq!(kept, counted);
            }
        }
    }

    /// The counts as a job on the writer reads them, zero counts left out.
    fn read_by_store(s: &Store<'_>) -> Result<Counts, LedgerError> {
        let mut counts = Counts::new();
        for target in TARGETS {
            for state in STATES {
                let n = s.count_in_state(target, DeliveryState::parse(state).unwrap())? as i64;
                if n != 0 {
                    counts.insert((target.to_owned(), state.to_owned()), n);
                }
            }
        }
        Ok(counts)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The writer counts in memory with its triggers off (`sqlite/row_counts.rs`): the
        /// same steps in jobs sent together, some of which fail (before or after reading a
        /// count) and are undone, leave the
        /// counters equal to a full count, and each job reads them exact after its writes.
        #[test]
        fn the_writer_keeps_the_counters_exact_through_failed_jobs(
            jobs in proptest::collection::vec(
                (proptest::collection::vec(step(), 1..6), 0..3u8), 1..16)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = crate::ledger::Db::open(&crate::ledger::DbOptions {
                path: dir.path().join("counts.db"),
                readers: 1,
            }).unwrap();
            let answers = runtime.block_on(futures_util::future::join_all(
                jobs.into_iter().enumerate().map(|(job, (steps, ending))| {
                    db.write(move |s| {
                        for (at, step) in steps.iter().enumerate() {
                            apply(s.conn(), (job * 10 + at) as i64, step);
                        }
                        let fails = Err(LedgerError::Commit("this job fails".into()));
                        if ending == 0 {
                            return fails;
                        }
                        let counted = kept_and_counted(s.conn()).1;
                        let read = read_by_store(s)?;
                        if ending == 1 {
                            return fails;
                        }
                        Ok((read, counted))
                    })
                }),
            ));
            for (read, counted) in answers.into_iter().flatten() {
                prop_assert_eq!(read, counted);
            }
            let (kept, counted) = runtime
                .block_on(db.read(|s| Ok::<_, LedgerError>(kept_and_counted(s.conn()))))
                .unwrap();
            prop_assert_eq!(kept, counted);
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
