//! Accept -> plan: the durable "needs planning" marks a SCIM write of a user commits in its
//! own transaction, and which the planner takes, oldest first, and clears once planned.

use rusqlite::{params, OptionalExtension};

use super::{LedgerError, Store};

/// A user waiting to be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    pub user_id: String,
    /// Changes each time the user is marked again: a plan made from an older read of the
    /// user must not clear a newer mark.
    pub seq: i64,
    /// The sealed password given since the user was last planned, by its id.
    pub fresh_secret: Option<String>,
    /// No desired state was ever recorded for the user.
    pub new: bool,
}

/// Marks a user, or marks it again with the next sequence number. A password already
/// waiting stays unless a newer one replaces it; a user that was never planned stays new.
const MARK: &str = "INSERT INTO plan_queue (user_id, fresh_secret, new) VALUES (?1, ?2, ?3) \
     ON CONFLICT (user_id) DO UPDATE SET seq = (SELECT max(seq) + 1 FROM plan_queue), \
     fresh_secret = coalesce(excluded.fresh_secret, fresh_secret)";

/// The marks waiting, as the triggers of migration 13 keep them.
const PLANNING: &str = "SELECT n FROM plan_queue_count WHERE id = 1";

impl Store<'_> {
    /// Promises that `user_id` will be planned: committed with the SCIM write that changed
    /// the user. `new` for a user created by that write.
    pub(crate) fn mark_for_planning(
        &self,
        user_id: &str,
        fresh_secret: Option<&str>,
        new: bool,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(MARK)?
            .execute(params![user_id, fresh_secret, new])?;
        Ok(())
    }

    /// Marks the stored users after `after_seq` (their own sequence in `users`), at most
    /// `limit` of them. Returns how many were marked and the last one's sequence.
    pub(crate) fn mark_users_after(
        &self,
        after_seq: i64,
        limit: u64,
    ) -> Result<(usize, i64), LedgerError> {
        let page: Vec<(i64, String)> = self
            .conn()
            .prepare_cached("SELECT seq, id FROM users WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
            .query_map(params![after_seq, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (_, id) in &page {
            self.mark_for_planning(id, None, false)?;
        }
        Ok((page.len(), page.last().map_or(after_seq, |(seq, _)| *seq)))
    }

    /// Whether `user_id` waits to be planned.
    pub(crate) fn is_marked(&self, user_id: &str) -> Result<bool, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM plan_queue WHERE user_id = ?1")?
            .query_row([user_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The oldest marks, at most `limit`.
    pub(crate) fn marks(&self, limit: usize) -> Result<Vec<Mark>, LedgerError> {
        let marks = self
            .conn()
            .prepare_cached(
                "SELECT user_id, seq, fresh_secret, new FROM plan_queue ORDER BY seq LIMIT ?1",
            )?
            .query_map([limit as i64], |row| {
                Ok(Mark {
                    user_id: row.get(0)?,
                    seq: row.get(1)?,
                    fresh_secret: row.get(2)?,
                    new: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(marks)
    }

    /// Clears `mark` if the user was not marked again since it was read. False when it was
    /// (or the mark is gone): what was planned from that read is out of date.
    pub(crate) fn clear_mark(&self, mark: &Mark) -> Result<bool, LedgerError> {
        let cleared = self
            .conn()
            .prepare_cached("DELETE FROM plan_queue WHERE user_id = ?1 AND seq = ?2")?
            .execute(params![mark.user_id, mark.seq])?;
        Ok(cleared > 0)
    }

    /// Drops a user's mark whatever its sequence, for a user deleted before it was
    /// planned. Returns the mark that was dropped.
    pub(crate) fn drop_mark(&self, user_id: &str) -> Result<Option<Mark>, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached(
                "DELETE FROM plan_queue WHERE user_id = ?1 \
                 RETURNING user_id, seq, fresh_secret, new",
            )?
            .query_row([user_id], |row| {
                Ok(Mark {
                    user_id: row.get(0)?,
                    seq: row.get(1)?,
                    fresh_secret: row.get(2)?,
                    new: row.get(3)?,
                })
            })
            .optional()?)
    }

    /// How many users wait to be planned, from the counter (see `counts.rs`).
    pub(crate) fn planning(&self) -> Result<u64, LedgerError> {
        let count: i64 = self
            .conn()
            .prepare_cached(PLANNING)?
            .query_row([], |row| row.get(0))?;
        let pending = self.counter().map_or(0, |counter| counter.pending_marks());
        Ok((count + pending).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::PLANNING;
    use crate::ledger::{migrations, Db, DbOptions, LedgerError, Store};

    async fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("q.db"),
            readers: 1,
        })
        .unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn a_user_marked_again_moves_to_the_back_and_keeps_its_password_and_newness() {
        let (_dir, db) = open().await;
        let marks = db
            .write(|s| {
                s.mark_for_planning("u1", Some("secret-1"), true)?;
                s.mark_for_planning("u2", None, false)?;
                s.mark_for_planning("u1", None, false)?;
                s.marks(10)
            })
            .await
            .unwrap();
        let order: Vec<_> = marks.iter().map(|m| m.user_id.as_str()).collect();
        assert_eq!(order, ["u2", "u1"]);
        assert_eq!(marks[1].fresh_secret.as_deref(), Some("secret-1"));
        assert!(marks[1].new);
        let replaced = db
            .write(|s| {
                s.mark_for_planning("u1", Some("secret-2"), false)?;
                s.drop_mark("u1")
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(replaced.fresh_secret.as_deref(), Some("secret-2"));
    }

    #[tokio::test]
    async fn a_mark_read_before_the_user_changed_again_is_not_cleared() {
        let (_dir, db) = open().await;
        let read = db
            .write(|s| {
                s.mark_for_planning("u1", None, true)?;
                s.marks(10)
            })
            .await
            .unwrap();
        let (stale, current) = db
            .write(move |s| {
                s.mark_for_planning("u1", None, false)?;
                let stale = s.clear_mark(&read[0])?;
                let current = s.marks(10)?;
                Ok::<_, LedgerError>((stale, current))
            })
            .await
            .unwrap();
        assert!(!stale);
        assert_eq!(current.len(), 1);
        let (cleared, left) = db
            .write(move |s| Ok::<_, LedgerError>((s.clear_mark(&current[0])?, s.planning()?)))
            .await
            .unwrap();
        assert!(cleared);
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn a_user_is_marked_from_its_write_until_it_is_planned() {
        let (_dir, db) = open().await;
        let marked = db
            .write(|s| {
                s.mark_for_planning("u1", None, true)?;
                Ok::<_, LedgerError>((s.is_marked("u1")?, s.is_marked("u2")?, s.marks(1)?))
            })
            .await
            .unwrap();
        assert_eq!((marked.0, marked.1), (true, false));
        let after = db
            .write(move |s| {
                s.clear_mark(&marked.2[0])?;
                s.is_marked("u1")
            })
            .await
            .unwrap();
        assert!(!after);
    }

    /// The kept count and a full count of the marks.
    fn kept_and_counted(s: &Store<'_>) -> Result<(u64, u64), LedgerError> {
        let counted: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM plan_queue", [], |row| row.get(0))?;
        Ok((s.planning()?, counted as u64))
    }

    #[tokio::test]
    async fn the_planning_counter_equals_a_full_count_after_marks_re_marks_clears_and_drops() {
        let (_dir, db) = open().await;
        let counts = db
            .write(|s| {
                let mut counts = Vec::new();
                for user in 0..5 {
                    s.mark_for_planning(&format!("u{user}"), None, true)?;
                }
                counts.push(kept_and_counted(s)?);
                // The same user marked twice is one mark.
                s.mark_for_planning("u1", Some("secret"), false)?;
                s.mark_for_planning("u1", None, false)?;
                counts.push(kept_and_counted(s)?);
                let marks = s.marks(2)?;
                for mark in &marks {
                    assert!(s.clear_mark(mark)?);
                }
                // A stale mark clears nothing and counts nothing off.
                assert!(!s.clear_mark(&marks[0])?);
                counts.push(kept_and_counted(s)?);
                assert!(s.drop_mark("u1")?.is_some());
                assert!(s.drop_mark("u1")?.is_none());
                counts.push(kept_and_counted(s)?);
                s.conn().execute("DELETE FROM plan_queue", [])?;
                counts.push(kept_and_counted(s)?);
                Ok::<_, LedgerError>(counts)
            })
            .await
            .unwrap();
        assert_eq!(counts, [(5, 5), (5, 5), (3, 3), (2, 2), (0, 0)]);
    }

    #[test]
    fn the_migration_counts_the_marks_already_there_and_planning_reads_no_mark() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &migrations::MIGRATIONS[..12] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 12;
             INSERT INTO plan_queue (user_id) VALUES ('u1'), ('u2'), ('u3');",
        )
        .unwrap();
        migrations::run(&mut conn).unwrap();
        assert_eq!(kept_and_counted(&Store::new(&conn)).unwrap(), (3, 3));
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PLANNING}"))
            .unwrap()
            .query_map([], |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().all(|step| !step.contains("plan_queue ")),
            "{plan:?}"
        );
    }
}
