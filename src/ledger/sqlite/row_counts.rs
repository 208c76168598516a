//! The writer's count of the rows it adds and removes, per target and state in
//! `deliveries` and in `plan_queue`, gathered by SQLite's pre-update hook as each row
//! changes.
//!
//! The counters (`delivery_counts`, `plan_queue_count`) are kept by triggers on every
//! connection but the writer's. On the writer each change ran a trigger program and an
//! upsert of its own (`BENCHMARKS.md`, "Counts kept by the writer"). There the triggers are
//! off and this hook notes each change in memory instead: a job's changes are kept for its
//! batch when it succeeds and dropped with its savepoint when it fails, and the batch's are
//! added to the counters once, just before it commits. A count read in between adds what
//! is pending (`pending_rows`), so every read is exact.
//!
//! The hook needs SQLite built with `SQLITE_ENABLE_PREUPDATE_HOOK` (`.cargo/config.toml`):
//! without it the build fails to link.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};

use rusqlite::{ffi, Connection};

/// What the writer changed since its counts were last settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RowChanges {
    /// Rows added (negative: removed) per (target, state) of `deliveries`.
    pub deliveries: Vec<(String, String, i64)>,
    /// Marks added (negative: removed) in `plan_queue`.
    pub plan_queue: i64,
    /// Set when a change could not be read: the counts would be wrong.
    pub unreadable: bool,
}

impl RowChanges {
    fn is_empty(&self) -> bool {
        self.plan_queue == 0 && !self.unreadable && self.deliveries.iter().all(|c| c.2 == 0)
    }

    /// Adds `other`'s changes to these.
    fn merge(&mut self, other: RowChanges) {
        for (target, state, by) in other.deliveries {
            self.add(target.as_bytes(), state.as_bytes(), by);
        }
        self.plan_queue += other.plan_queue;
        self.unreadable |= other.unreadable;
    }

    fn rows(&self, target: &str, state: &str) -> i64 {
        self.deliveries
            .iter()
            .filter(|(t, s, _)| t == target && s == state)
            .map(|c| c.2)
            .sum()
    }

    fn add(&mut self, target: &[u8], state: &[u8], by: i64) {
        let seen = self
            .deliveries
            .iter_mut()
            .find(|(t, s, _)| t.as_bytes() == target && s.as_bytes() == state);
        match (
            seen,
            std::str::from_utf8(target),
            std::str::from_utf8(state),
        ) {
            (Some(entry), _, _) => entry.2 += by,
            (None, Ok(target), Ok(state)) => {
                self.deliveries
                    .push((target.to_owned(), state.to_owned(), by))
            }
            (None, _, _) => self.unreadable = true,
        }
    }
}

/// What the hook reads: where `target` and `state` sit among the columns of `deliveries`;
/// and the changes of the running job, and those of the batch's jobs before it.
struct HookState {
    target_column: c_int,
    state_column: c_int,
    job: RefCell<RowChanges>,
    batch: RefCell<RowChanges>,
}

/// The hook on one connection. Dropping it removes the hook.
pub(crate) struct RowCounter {
    db: *mut ffi::sqlite3,
    state: Box<HookState>,
}

// SAFETY: the hook runs only inside calls on the connection it was installed on, and the
// counter travels with that connection (both move into the writer thread together): its
// state is never touched from two threads at once.
unsafe impl Send for RowCounter {}

impl RowCounter {
    /// Installs the hook on `conn`, which must outlive the counter. Fails when
    /// `deliveries` has no `target` or `state` column (the schema is not migrated).
    pub(crate) fn install(conn: &Connection) -> rusqlite::Result<RowCounter> {
        let column = |name: &str| -> rusqlite::Result<c_int> {
            conn.query_row(
                "SELECT cid FROM pragma_table_info('deliveries', 'main') WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
        };
        let state = Box::new(HookState {
            target_column: column("target")?,
            state_column: column("state")?,
            job: RefCell::default(),
            batch: RefCell::default(),
        });
        // SAFETY: the handle is the live connection's; the context points into a box this
        // counter owns and that stays put until `drop` removes the hook.
        let db = unsafe { conn.handle() };
        unsafe {
            ffi::sqlite3_preupdate_hook(
                db,
                Some(on_change),
                std::ptr::from_ref(state.as_ref())
                    .cast_mut()
                    .cast::<c_void>(),
            );
        }
        Ok(RowCounter { db, state })
    }

    /// The running job succeeded: its changes join the batch's.
    pub(crate) fn keep_job(&self) {
        let job = self.state.job.take();
        if !job.is_empty() {
            self.state.batch.borrow_mut().merge(job);
        }
    }

    /// The running job's changes are undone: they are not counted.
    pub(crate) fn drop_job(&self) {
        self.state.job.take();
    }

    /// The batch's changes, to add to the counters before it commits (or to drop with it).
    pub(crate) fn take_batch(&self) -> RowChanges {
        self.keep_job();
        self.state.batch.take()
    }

    /// Rows of `target` in `state` added (negative: removed) and not yet in the counters;
    /// `None` when a change could not be read.
    pub(crate) fn pending_rows(&self, target: &str, state: &str) -> Option<i64> {
        let (job, batch) = (self.state.job.borrow(), self.state.batch.borrow());
        (!job.unreadable && !batch.unreadable)
            .then(|| job.rows(target, state) + batch.rows(target, state))
    }

    /// Marks added (negative: removed) and not yet in the counter.
    pub(crate) fn pending_marks(&self) -> i64 {
        self.state.job.borrow().plan_queue + self.state.batch.borrow().plan_queue
    }
}

impl Drop for RowCounter {
    fn drop(&mut self) {
        // SAFETY: the connection outlives the counter (see `install`).
        unsafe {
            ffi::sqlite3_preupdate_hook(self.db, None, std::ptr::null_mut());
        }
    }
}

/// Which row image a column is read from.
#[derive(Clone, Copy)]
enum Image {
    Old,
    New,
}

/// Called by SQLite before each row it inserts, updates or deletes on the connection.
unsafe extern "C" fn on_change(
    context: *mut c_void,
    db: *mut ffi::sqlite3,
    op: c_int,
    schema: *const c_char,
    table: *const c_char,
    _old_key: ffi::sqlite3_int64,
    _new_key: ffi::sqlite3_int64,
) {
    // SAFETY: `context` is the `HookState` given in `install`, alive while the hook is set;
    // SQLite passes NUL-terminated names valid for this call.
    let state = unsafe { &*(context as *const HookState) };
    let (schema, table) = unsafe { (CStr::from_ptr(schema), CStr::from_ptr(table)) };
    if schema.to_bytes() != b"main" {
        return;
    }
    let Ok(mut changes) = state.job.try_borrow_mut() else {
        return;
    };
    match table.to_bytes() {
        b"plan_queue" => match op {
            ffi::SQLITE_INSERT => changes.plan_queue += 1,
            ffi::SQLITE_DELETE => changes.plan_queue -= 1,
            _ => {}
        },
        b"deliveries" => {
            let key = |image| unsafe {
                Some((
                    column(db, image, state.target_column)?,
                    column(db, image, state.state_column)?,
                ))
            };
            let (old, new) = match op {
                ffi::SQLITE_INSERT => (None, key(Image::New)),
                ffi::SQLITE_DELETE => (key(Image::Old), None),
                _ => (key(Image::Old), key(Image::New)),
            };
            let wanted = match op {
                ffi::SQLITE_INSERT => (false, true),
                ffi::SQLITE_DELETE => (true, false),
                _ => (true, true),
            };
            if (old.is_some(), new.is_some()) != wanted {
                changes.unreadable = true;
                return;
            }
            if old == new {
                return;
            }
            if let Some((target, state)) = old {
                changes.add(target, state, -1);
            }
            if let Some((target, state)) = new {
                changes.add(target, state, 1);
            }
        }
        _ => {}
    }
}

/// A text column of the row being changed, valid until the hook returns.
///
/// # Safety
/// Only from within the pre-update hook of `db`.
unsafe fn column<'a>(db: *mut ffi::sqlite3, image: Image, index: c_int) -> Option<&'a [u8]> {
    let mut value: *mut ffi::sqlite3_value = std::ptr::null_mut();
    let read = match image {
        Image::Old => unsafe { ffi::sqlite3_preupdate_old(db, index, &mut value) },
        Image::New => unsafe { ffi::sqlite3_preupdate_new(db, index, &mut value) },
    };
    if read != ffi::SQLITE_OK || value.is_null() {
        return None;
    }
    // SAFETY: `value` is SQLite's protected value for this call; the text it returns stays
    // valid until the value is converted again or the hook returns.
    unsafe {
        let text = ffi::sqlite3_value_text(value);
        if text.is_null() {
            return None;
        }
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).ok()?;
        Some(std::slice::from_raw_parts(text, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE deliveries (user_id TEXT, payload TEXT, state TEXT, target TEXT, \
             PRIMARY KEY (user_id, target)) WITHOUT ROWID;
             CREATE TABLE plan_queue (user_id TEXT PRIMARY KEY, seq INTEGER);",
        )
        .unwrap();
        conn
    }

    fn counted(changes: &RowChanges) -> Vec<(String, String, i64)> {
        let mut rows: Vec<_> = changes
            .deliveries
            .iter()
            .filter(|c| c.2 != 0)
            .cloned()
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn each_insert_update_and_delete_moves_the_count_of_its_target_and_state() {
        let conn = ledger();
        let counter = RowCounter::install(&conn).unwrap();
        conn.execute_batch(
            "INSERT INTO deliveries VALUES ('u1', '{}', 'pending', 'kibo'), \
                                           ('u2', '{}', 'pending', 'kibo'), \
                                           ('u1', '{}', 'pending', 'appgate');
             UPDATE deliveries SET state = 'delivered' WHERE user_id = 'u1';
             UPDATE deliveries SET payload = '{\"a\":1}' WHERE user_id = 'u2';
             INSERT INTO deliveries VALUES ('u2', '{}', 'held', 'kibo')
                 ON CONFLICT DO UPDATE SET state = excluded.state;
             DELETE FROM deliveries WHERE target = 'appgate';
             INSERT INTO plan_queue VALUES ('u1', 1), ('u2', 2);
             INSERT INTO plan_queue VALUES ('u1', 3) ON CONFLICT DO UPDATE SET seq = 3;
             DELETE FROM plan_queue WHERE user_id = 'u2';",
        )
        .unwrap();
        assert_eq!(counter.pending_rows("kibo", "delivered"), Some(1));
        assert_eq!(counter.pending_rows("kibo", "pending"), Some(0));
        assert_eq!(counter.pending_marks(), 1);
        let changes = counter.take_batch();
        assert_eq!(
            counted(&changes),
            vec![
                ("kibo".into(), "delivered".into(), 1),
                ("kibo".into(), "held".into(), 1),
            ]
        );
        assert_eq!(changes.plan_queue, 1);
        assert!(!changes.unreadable);
        assert!(counter.take_batch().is_empty(), "taken once");
    }

    #[test]
    fn a_dropped_job_leaves_the_batch_as_the_kept_ones_made_it() {
        let conn = ledger();
        let counter = RowCounter::install(&conn).unwrap();
        conn.execute_batch("INSERT INTO deliveries VALUES ('u1', '{}', 'pending', 'kibo');")
            .unwrap();
        counter.keep_job();
        conn.execute_batch("INSERT INTO deliveries VALUES ('u2', '{}', 'pending', 'kibo');")
            .unwrap();
        assert_eq!(counter.pending_rows("kibo", "pending"), Some(2));
        counter.drop_job();
        assert_eq!(counter.pending_rows("kibo", "pending"), Some(1));
        conn.execute_batch("INSERT INTO plan_queue VALUES ('u3', 1);")
            .unwrap();
        let batch = counter.take_batch();
        assert_eq!(counted(&batch), vec![("kibo".into(), "pending".into(), 1)]);
        assert_eq!(
            batch.plan_queue, 1,
            "the running job is kept with the batch"
        );
    }

    #[test]
    fn changes_in_other_tables_and_after_the_counter_is_gone_are_not_counted() {
        let conn = ledger();
        conn.execute_batch("CREATE TEMP TABLE deliveries (target TEXT, state TEXT);")
            .unwrap();
        let counter = RowCounter::install(&conn).unwrap();
        conn.execute_batch("INSERT INTO temp.deliveries VALUES ('kibo', 'pending');")
            .unwrap();
        assert!(counter.take_batch().is_empty());
        drop(counter);
        conn.execute_batch("INSERT INTO main.deliveries VALUES ('u1', '{}', 'pending', 'kibo');")
            .unwrap();
    }
}
