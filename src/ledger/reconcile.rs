//! Reconciliation's part of the ledger: its runs and findings (migration 8), the ids a
//! listing met, the batched look-ups that compare a page of accounts with the ledger, and
//! the row changes that leave a repair due for the fan-out workers.

use rusqlite::{params, Row};
use serde::Serialize;
use serde_json::{Map, Value};

use super::deliveries::DELIVERY_COLUMNS;
use super::{Delivery, DeliveryState, LedgerError, StateKey, Store};

/// One reconcile run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RunRow {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The one target it covered; `None`: every target.
    pub target: Option<String>,
    /// Whether the policies were carried out, or only reported.
    pub apply: bool,
    /// running, finished, failed or cancelled.
    pub status: String,
    /// Findings per target and kind: `{"kibo": {"missing": 2}}`.
    pub counts: Value,
    pub error: Option<String>,
}

/// One finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FindingRow {
    pub seq: i64,
    pub run_id: i64,
    pub kind: String,
    pub target: String,
    pub user_id: Option<String>,
    pub remote_id: Option<String>,
    /// The fields involved, each with its desired, delivered and actual value.
    pub fields: Value,
    pub decision: String,
    /// Why carrying the decision out failed, if it did.
    pub error: Option<String>,
}

/// The account a reconcile or a sync last read for one (user, target), replaced on each
/// read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccountRead {
    pub user_id: String,
    pub target: String,
    pub read_at: i64,
    pub remote_id: Option<String>,
    /// The account's fields without its secrets; `None`: the target held no account for
    /// the user.
    pub account: Option<Map<String, Value>>,
}

const RUN_COLUMNS: &str =
    "id, started_at, finished_at, target, apply, status, counts, error FROM reconcile_runs";

fn read_run(row: &Row<'_>) -> rusqlite::Result<(RunRow, String)> {
    Ok((
        RunRow {
            id: row.get(0)?,
            started_at: row.get(1)?,
            finished_at: row.get(2)?,
            target: row.get(3)?,
            apply: row.get(4)?,
            status: row.get(5)?,
            counts: Value::Null,
            error: row.get(7)?,
        },
        row.get(6)?,
    ))
}

fn finish_run((mut run, counts): (RunRow, String)) -> Result<RunRow, LedgerError> {
    run.counts = serde_json::from_str(&counts)?;
    Ok(run)
}

impl Store<'_> {
    /// Keeps what a reconcile or a sync read, each in place of the previous read.
    pub(crate) fn record_reads(&self, reads: &[AccountRead]) -> Result<(), LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "INSERT INTO accounts_read (user_id, target, read_at, remote_id, account) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, target) DO UPDATE SET \
             read_at = excluded.read_at, remote_id = excluded.remote_id, \
             account = excluded.account",
        )?;
        for read in reads {
            let account = read
                .account
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?;
            stmt.execute(params![
                read.user_id,
                read.target,
                read.read_at,
                read.remote_id,
                account
            ])?;
        }
        Ok(())
    }

    /// The accounts last read for `user_id`, one per target that was read.
    pub(crate) fn accounts_read_of(&self, user_id: &str) -> Result<Vec<AccountRead>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT user_id, target, read_at, remote_id, account FROM accounts_read \
             WHERE user_id = ?1 ORDER BY target",
        )?;
        let raw = stmt
            .query_map([user_id], |row| {
                Ok((
                    AccountRead {
                        user_id: row.get(0)?,
                        target: row.get(1)?,
                        read_at: row.get(2)?,
                        remote_id: row.get(3)?,
                        account: None,
                    },
                    row.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|(mut read, account)| {
                read.account = account.map(|a| serde_json::from_str(&a)).transpose()?;
                Ok(read)
            })
            .collect()
    }

    pub(crate) fn begin_reconcile_run(
        &self,
        started_at: i64,
        target: Option<&str>,
        apply: bool,
    ) -> Result<i64, LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO reconcile_runs (started_at, target, apply, status) \
                 VALUES (?1, ?2, ?3, 'running')",
            )?
            .execute(params![started_at, target, apply])?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Closes a run: its status, and its counts per target and kind taken from its findings.
    /// The ids its listing met are no longer needed.
    pub(crate) fn finish_reconcile_run(
        &self,
        run_id: i64,
        finished_at: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<RunRow, LedgerError> {
        let counts = self.finding_counts(run_id)?;
        self.conn()
            .prepare_cached(
                "UPDATE reconcile_runs SET finished_at = ?2, status = ?3, counts = ?4, \
                 error = ?5 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                finished_at,
                status,
                serde_json::to_string(&counts)?,
                error
            ])?;
        self.conn()
            .prepare_cached("DELETE FROM reconcile_seen WHERE run_id = ?1")?
            .execute([run_id])?;
        self.reconcile_run(run_id)?
            .ok_or(LedgerError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }

    /// Findings per target and kind of a run, as a JSON object of objects.
    pub(crate) fn finding_counts(&self, run_id: i64) -> Result<Value, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT target, kind, COUNT(*) FROM reconcile_findings WHERE run_id = ?1 \
             GROUP BY target, kind ORDER BY target, kind",
        )?;
        let rows = stmt
            .query_map([run_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut counts = serde_json::Map::new();
        for (target, kind, count) in rows {
            if let Value::Object(kinds) = counts
                .entry(target)
                .or_insert_with(|| Value::Object(serde_json::Map::new()))
            {
                kinds.insert(kind, Value::from(count));
            }
        }
        Ok(Value::Object(counts))
    }

    pub(crate) fn record_findings(&self, findings: &[FindingRow]) -> Result<(), LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "INSERT INTO reconcile_findings (run_id, kind, target, user_id, remote_id, fields, \
             decision, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for finding in findings {
            stmt.execute(params![
                finding.run_id,
                finding.kind,
                finding.target,
                finding.user_id,
                finding.remote_id,
                serde_json::to_string(&finding.fields)?,
                finding.decision,
                finding.error,
            ])?;
        }
        Ok(())
    }

    /// Notes the ids a page of the listing showed.
    pub(crate) fn mark_seen(
        &self,
        run_id: i64,
        target: &str,
        remote_ids: &[String],
    ) -> Result<(), LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "INSERT OR IGNORE INTO reconcile_seen (run_id, target, remote_id) VALUES (?1, ?2, ?3)",
        )?;
        for id in remote_ids {
            stmt.execute(params![run_id, target, id])?;
        }
        Ok(())
    }

    /// The rows of `target` linked to any of `remote_ids`.
    pub(crate) fn linked_to(
        &self,
        target: &str,
        remote_ids: &[String],
    ) -> Result<Vec<Delivery>, LedgerError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE target = ?1 AND remote_id IN \
             (SELECT value FROM json_each(?2))"
        );
        self.deliveries(&sql, params![target, serde_json::to_string(remote_ids)?])
    }

    /// The rows of `target` without a target id whose payload field `key` is one of
    /// `values`, compared case-insensitively (natural keys are names and e-mail addresses).
    pub(crate) fn unlinked_with_key(
        &self,
        target: &str,
        key: &str,
        values: &[String],
    ) -> Result<Vec<Delivery>, LedgerError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE target = ?1 AND remote_id IS NULL \
             AND lower(payload ->> ?2) IN (SELECT lower(value) FROM json_each(?3))"
        );
        let path = format!("$.\"{}\"", key.replace('"', ""));
        self.deliveries(&sql, params![target, path, serde_json::to_string(values)?])
    }

    /// The next `limit` rows of `target` with a target id, after `after` in user order.
    /// With `unseen_by`, only those the run's listing did not show and that were last
    /// written before `before` (a row delivered while the listing ran may not be in it).
    pub(crate) fn linked_after(
        &self,
        target: &str,
        after: &str,
        unseen_by: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let (run_id, before) = unseen_by.map_or((None, None), |(r, b)| (Some(r), Some(b)));
        self.deliveries(
            &linked_after_sql(),
            params![target, after, run_id, before, limit as i64],
        )
    }

    /// The next `limit` rows of `target` without a target id, after `after` in user order,
    /// that the run has no finding for yet.
    pub(crate) fn unlinked_after(
        &self,
        run_id: i64,
        target: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE target = ?1 AND user_id > ?2 \
             AND remote_id IS NULL AND NOT EXISTS (SELECT 1 FROM reconcile_findings f \
             WHERE f.run_id = ?3 AND f.target = ?1 AND f.user_id = d.user_id) \
             ORDER BY user_id LIMIT ?4"
        );
        self.deliveries(&sql, params![target, after, run_id, limit as i64])
    }

    /// How many rows of `target` the ledger holds, for the progress of a run.
    pub(crate) fn ledger_size(&self, target: &str) -> Result<u64, LedgerError> {
        let mut count: i64 = self
            .conn()
            .prepare_cached("SELECT COALESCE(SUM(n), 0) FROM delivery_counts WHERE target = ?1")?
            .query_row([target], |row| row.get(0))?;
        for state in DeliveryState::ALL {
            count += self.pending_rows(target, state)?;
        }
        Ok(count.max(0) as u64)
    }

    /// The account vanished: the link is dropped and the row made due, so the worker finds
    /// nothing by natural key and creates it again. Only if the row still names `remote_id`.
    pub(crate) fn heal_missing(
        &self,
        user_id: &str,
        target: &str,
        remote_id: &str,
        now: i64,
    ) -> Result<bool, LedgerError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE deliveries SET remote_id = NULL, delivered_hash = NULL, delivered_payload = NULL, \
                 state = 'pending', attempts = 0, next_attempt_at = ?4, updated_at = ?4, \
                 failing_since = NULL WHERE user_id = ?1 AND target = ?2 AND remote_id = ?3",
            )?
            .execute(params![user_id, target, remote_id, now])?;
        Ok(changed > 0)
    }

    /// Makes a row due again as it stands: the worker re-sends the desired state (a drift
    /// repaired) or, for a row without a target id, adopts the account its natural key
    /// finds. Only if the desired state is still `hash`.
    pub(crate) fn redeliver(
        &self,
        user_id: &str,
        target: &str,
        hash: &StateKey,
        now: i64,
    ) -> Result<bool, LedgerError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?4, \
                 updated_at = ?4, failing_since = NULL \
                 WHERE user_id = ?1 AND target = ?2 AND desired_hash = ?3",
            )?
            .execute(params![user_id, target, hash, now])?;
        Ok(changed > 0)
    }

    /// The most recent runs first.
    pub(crate) fn reconcile_runs(&self, limit: usize) -> Result<Vec<RunRow>, LedgerError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} ORDER BY id DESC LIMIT ?1"))?;
        let raw = stmt
            .query_map([limit as i64], read_run)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(finish_run).collect()
    }

    pub(crate) fn reconcile_run(&self, run_id: i64) -> Result<Option<RunRow>, LedgerError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} WHERE id = ?1"))?;
        let raw = stmt
            .query_map([run_id], read_run)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(finish_run).next().transpose()
    }

    /// The most recent run that finished.
    pub(crate) fn last_finished_reconcile_run(&self) -> Result<Option<RunRow>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} WHERE status = 'finished' ORDER BY id DESC LIMIT 1"
        ))?;
        let raw = stmt
            .query_map([], read_run)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(finish_run).next().transpose()
    }

    /// A run's findings in the order found, optionally of one kind, from `after` on.
    pub(crate) fn reconcile_findings(
        &self,
        run_id: i64,
        kind: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FindingRow>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT seq, run_id, kind, target, user_id, remote_id, fields, decision, error \
             FROM reconcile_findings WHERE run_id = ?1 AND (?2 IS NULL OR kind = ?2) \
             AND seq > ?3 ORDER BY seq LIMIT ?4",
        )?;
        let raw = stmt
            .query_map(params![run_id, kind, after, limit as i64], |row| {
                Ok((
                    FindingRow {
                        seq: row.get(0)?,
                        run_id: row.get(1)?,
                        kind: row.get(2)?,
                        target: row.get(3)?,
                        user_id: row.get(4)?,
                        remote_id: row.get(5)?,
                        fields: Value::Null,
                        decision: row.get(7)?,
                        error: row.get(8)?,
                    },
                    row.get::<_, String>(6)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|(mut finding, fields)| {
                finding.fields = serde_json::from_str(&fields)?;
                Ok(finding)
            })
            .collect()
    }

    /// Deletes runs (and their findings) started before `before`; returns how many runs.
    pub(crate) fn prune_reconcile_runs(&self, before: i64) -> Result<usize, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM reconcile_runs WHERE started_at < ?1")?
            .execute([before])?)
    }
}

/// `linked_after`'s query. It walks the key's index from `after`, so that each batch reads
/// about its own rows: left to choose, SQLite took the index of the targets' ids and sorted
/// every linked row of the target for each batch, and reading a target that cannot list
/// (by id, a batch at a time) grew with the square of its accounts (50,000 at one target:
/// 7.6 s of queries against 0.06 s; BENCHMARKS.md, ninth pass). `INDEXED BY` makes a schema
/// change that loses the index an error instead of that plan.
fn linked_after_sql() -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d \
         INDEXED BY sqlite_autoindex_deliveries_1 WHERE target = ?1 AND user_id > ?2 \
         AND remote_id IS NOT NULL AND (?3 IS NULL OR (updated_at < ?4 AND NOT EXISTS \
         (SELECT 1 FROM reconcile_seen s WHERE s.run_id = ?3 AND s.target = ?1 \
         AND s.remote_id = d.remote_id))) ORDER BY user_id LIMIT ?5"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::{Db, DbOptions, DeliveryOp, Desired};

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("ledger.db"),
            readers: 2,
        })
        .unwrap();
        (db, dir)
    }

    fn desired(user: &str, email: &str) -> Desired {
        Desired {
            user_id: user.into(),
            target: "kibo".into(),
            operation: DeliveryOp::Upsert,
            payload: crate::targets::object(json!({"emailAddress": email})),
            create_only: vec![],
            unmanaged: vec![],
            password_field: None,
            secret_id: None,
            retain_secret: false,
            hash: StateKey::sample(user),
            mapping_version: "m1".into(),
        }
    }

    fn finding(run_id: i64, kind: &str, user: &str) -> FindingRow {
        FindingRow {
            seq: 0,
            run_id,
            kind: kind.into(),
            target: "kibo".into(),
            user_id: Some(user.into()),
            remote_id: None,
            fields: json!([]),
            decision: "report".into(),
            error: None,
        }
    }

    #[tokio::test]
    async fn linked_rows_are_read_in_user_order_without_sorting_them_all() {
        let (db, _dir) = db().await;
        let plan = db
            .read(|s| {
                let mut statement = s
                    .conn()
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", linked_after_sql()))?;
                let steps = statement
                    .query_map(params!["kibo", "", 1, 2, 10], |row| row.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok::<_, LedgerError>(steps)
            })
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("sqlite_autoindex_deliveries_1 (user_id>?)")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn runs_findings_lookups_and_pruning() {
        let (db, _dir) = db().await;
        let run_id = db
            .write(|s| {
                for (user, email) in [("u1", "a@x.test"), ("u2", "B@x.test"), ("u3", "c@x.test")] {
                    s.set_first_desired(&desired(user, email), 10)?;
                }
                s.conn().execute_batch(
                    "UPDATE deliveries SET remote_id = 'r1', state = 'delivered' \
                     WHERE user_id = 'u1'; \
                     UPDATE deliveries SET remote_id = 'r3', state = 'delivered' \
                     WHERE user_id = 'u3';",
                )?;
                let run_id = s.begin_reconcile_run(100, None, false)?;
                s.mark_seen(run_id, "kibo", &["r1".into(), "r9".into()])?;
                Ok::<_, LedgerError>(run_id)
            })
            .await
            .unwrap();
        let (linked, by_key, unseen, all_linked) = db
            .read(move |s| {
                Ok::<_, LedgerError>((
                    s.linked_to("kibo", &["r1".into(), "r9".into()])?,
                    s.unlinked_with_key("kibo", "emailAddress", &["b@X.test".into()])?,
                    s.linked_after("kibo", "", Some((run_id, 200)), 10)?,
                    s.linked_after("kibo", "u1", None, 10)?,
                ))
            })
            .await
            .unwrap();
        let users = |rows: &[Delivery]| -> Vec<String> {
            rows.iter().map(|r| r.desired.user_id.clone()).collect()
        };
        assert_eq!(users(&linked), ["u1"]);
        assert_eq!(users(&by_key), ["u2"]);
        assert_eq!(users(&unseen), ["u3"], "linked, not listed");
        assert_eq!(users(&all_linked), ["u3"], "after u1 in user order");

        let run = db
            .write(move |s| {
                s.record_findings(&[
                    finding(run_id, "missing", "u3"),
                    finding(run_id, "pending", "u2"),
                ])?;
                assert!(
                    s.unlinked_after(run_id, "kibo", "", 10)?.is_empty(),
                    "u2 has a finding"
                );
                assert!(s.heal_missing("u3", "kibo", "r3", 300)?);
                assert!(!s.heal_missing("u3", "kibo", "r3", 300)?, "already healed");
                assert!(s.redeliver("u1", "kibo", &StateKey::sample("u1"), 300)?);
                assert!(!s.redeliver("u1", "kibo", &StateKey::sample("other"), 300)?);
                s.finish_reconcile_run(run_id, 400, "finished", None)
            })
            .await
            .unwrap();
        assert_eq!(run.counts, json!({"kibo": {"missing": 1, "pending": 1}}));
        assert_eq!(run.finished_at, Some(400));
        let (healed, kinds, seen_left) = db
            .read(move |s| {
                let seen: i64 =
                    s.conn()
                        .query_row("SELECT COUNT(*) FROM reconcile_seen", [], |r| r.get(0))?;
                Ok::<_, LedgerError>((
                    s.delivery("u3", "kibo")?.unwrap(),
                    s.reconcile_findings(run_id, Some("missing"), 0, 10)?,
                    seen,
                ))
            })
            .await
            .unwrap();
        assert_eq!(healed.remote_id, None);
        assert!(healed.is_due(300));
        assert_eq!(kinds.len(), 1);
        assert_eq!(seen_left, 0, "the listing's ids go with the run");

        let pruned = db.write(|s| s.prune_reconcile_runs(101)).await.unwrap();
        assert_eq!(pruned, 1);
        let left = db
            .read(move |s| s.reconcile_findings(run_id, None, 0, 10))
            .await
            .unwrap();
        assert!(left.is_empty(), "findings go with their run");
    }
}
