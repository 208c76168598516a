//! The operator audit trail (migration 9): every operator action, from the admin API, the
//! `ledger` CLI or a signal, with who, what, on which target or user, and how it ended.
//! Append-only: `append_audit` is the one way in, and only the retention prunes it.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, Row};
use serde::Serialize;
use serde_json::Value;

use super::{LedgerError, Store};

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuditAction {
    Replay,
    Pause,
    Resume,
    Release,
    Discard,
    MappingReload,
    /// A reconcile that carried out its policies (`--apply`).
    ReconcileApply,
    /// One user provisioned on demand (`sync`, not a dry run).
    Sync,
    /// The reconcile run in progress paused, resumed or cancelled.
    ReconcilePause,
    ReconcileResume,
    ReconcileCancel,
}

impl AuditAction {
    pub(crate) const ALL: [AuditAction; 11] = [
        AuditAction::Replay,
        AuditAction::Pause,
        AuditAction::Resume,
        AuditAction::Release,
        AuditAction::Discard,
        AuditAction::MappingReload,
        AuditAction::ReconcileApply,
        AuditAction::Sync,
        AuditAction::ReconcilePause,
        AuditAction::ReconcileResume,
        AuditAction::ReconcileCancel,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuditAction::Replay => "replay",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Release => "release",
            AuditAction::Discard => "discard",
            AuditAction::MappingReload => "mapping_reload",
            AuditAction::ReconcileApply => "reconcile_apply",
            AuditAction::Sync => "sync",
            AuditAction::ReconcilePause => "reconcile_pause",
            AuditAction::ReconcileResume => "reconcile_resume",
            AuditAction::ReconcileCancel => "reconcile_cancel",
        }
    }

    /// The action named `text` (stored, or asked for by an operator).
    pub(crate) fn parse(text: &str) -> Option<AuditAction> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }

    /// Every action's name, for an error that lists them.
    pub(crate) fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
        names.join(", ")
    }
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuditOutcome {
    Ok,
    /// Refused before it changed anything (an invalid mapping set, say).
    Refused,
    /// Attempted and failed part-way.
    Failed,
}

impl AuditOutcome {
    const ALL: [AuditOutcome; 3] = [
        AuditOutcome::Ok,
        AuditOutcome::Refused,
        AuditOutcome::Failed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl FromSql for AuditAction {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        AuditAction::parse(text).ok_or_else(|| {
            FromSqlError::Other(format!("unknown audit action {text:?} in the ledger").into())
        })
    }
}

impl FromSql for AuditOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        AuditOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| {
                FromSqlError::Other(format!("unknown audit outcome {text:?} in the ledger").into())
            })
    }
}

/// Who acted, as the audit trail names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Actor {
    /// An admin API client, by its configured name (`development` for the dev token).
    Admin(String),
    /// The `ledger` CLI, by the operating-system user who ran it.
    Cli(String),
    /// A signal to the process (SIGHUP reloads the mappings).
    Signal,
    /// The bridge's own schedule (`reconcile.interval`).
    #[default]
    Schedule,
}

impl Actor {
    /// The `ledger` CLI's actor: the user the shell says is running it.
    pub(crate) fn cli() -> Actor {
        let user = ["USER", "LOGNAME"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        Actor::Cli(user)
    }

    /// `admin:<client>`, `cli:<os user>`, `signal` or `schedule`.
    pub(crate) fn name(&self) -> String {
        match self {
            Actor::Admin(client) => format!("admin:{client}"),
            Actor::Cli(user) => format!("cli:{user}"),
            Actor::Signal => "signal".to_owned(),
            Actor::Schedule => "schedule".to_owned(),
        }
    }
}

/// One operator action, to append.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AuditEntry {
    /// Unix milliseconds, from the injected clock.
    pub at: i64,
    /// `admin:<client>`, `cli:<os user>` or `signal` (see `Actor::name`).
    pub actor: String,
    pub action: AuditAction,
    pub target: Option<String>,
    pub user_id: Option<String>,
    /// What the action was given and what it did (counts, mapping versions, errors).
    pub detail: Value,
    pub outcome: AuditOutcome,
}

/// An entry as stored, with its place in the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Audited {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which entries to read: newest first, before `before` (a `seq`), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuditQuery {
    pub action: Option<AuditAction>,
    pub target: Option<String>,
    pub before: Option<i64>,
    pub limit: usize,
}

fn read_audited(row: &Row<'_>) -> rusqlite::Result<(Audited, String)> {
    Ok((
        Audited {
            seq: row.get(0)?,
            entry: AuditEntry {
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                target: row.get(4)?,
                user_id: row.get(5)?,
                detail: Value::Null,
                outcome: row.get(7)?,
            },
        },
        row.get(6)?,
    ))
}

impl Store<'_> {
    /// Appends one operator action to the audit trail. Called in the same write as the
    /// action where there is one, so the trail holds an action exactly when it happened.
    pub(crate) fn append_audit(&self, entry: &AuditEntry) -> Result<i64, LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO audit (at, actor, action, target, user_id, detail, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                entry.at,
                entry.actor,
                entry.action.as_str(),
                entry.target,
                entry.user_id,
                serde_json::to_string(&entry.detail)?,
                entry.outcome.as_str(),
            ])?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Entries matching `query`, newest first.
    pub(crate) fn audit(&self, query: &AuditQuery) -> Result<Vec<Audited>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT seq, at, actor, action, target, user_id, detail, outcome FROM audit \
             WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR target = ?2) \
             AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4",
        )?;
        let raw = stmt
            .query_map(
                params![
                    query.action.map(AuditAction::as_str),
                    query.target,
                    query.before,
                    query.limit as i64
                ],
                read_audited,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|(mut audited, detail)| {
                audited.entry.detail = serde_json::from_str(&detail)?;
                Ok(audited)
            })
            .collect()
    }

    /// Deletes entries older than `before` (the history's retention); returns how many.
    pub(crate) fn prune_audit(&self, before: i64) -> Result<usize, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM audit WHERE at < ?1")?
            .execute([before])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Db, DbOptions};

    fn entry(at: i64, action: AuditAction, target: &str) -> AuditEntry {
        AuditEntry {
            at,
            actor: Actor::Admin("ops".into()).name(),
            action,
            target: Some(target.into()),
            user_id: None,
            detail: serde_json::json!({"n": at}),
            outcome: AuditOutcome::Ok,
        }
    }

    #[tokio::test]
    async fn entries_are_appended_read_newest_first_filtered_paged_and_never_updated() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("a.db"),
            readers: 1,
        })
        .unwrap();
        db.write(|s| {
            s.append_audit(&entry(1, AuditAction::Pause, "kibo"))?;
            s.append_audit(&entry(2, AuditAction::Resume, "kibo"))?;
            s.append_audit(&entry(3, AuditAction::Pause, "appgate"))?;
            s.append_audit(&entry(4, AuditAction::Release, "kibo"))
        })
        .await
        .unwrap();
        let all = db
            .read(|s| {
                s.audit(&AuditQuery {
                    limit: 10,
                    ..AuditQuery::default()
                })
            })
            .await
            .unwrap();
        let times: Vec<i64> = all.iter().map(|a| a.entry.at).collect();
        assert_eq!(times, [4, 3, 2, 1]);
        assert_eq!(all[0].entry.detail, serde_json::json!({"n": 4}));
        assert_eq!(all[0].entry.actor, "admin:ops");

        let before = all[1].seq;
        let pauses = db
            .read(move |s| {
                s.audit(&AuditQuery {
                    action: Some(AuditAction::Pause),
                    before: Some(before),
                    limit: 10,
                    ..AuditQuery::default()
                })
            })
            .await
            .unwrap();
        assert_eq!(pauses.len(), 1);
        assert_eq!(pauses[0].entry.at, 1);

        let refused = db
            .write(|s| -> Result<usize, LedgerError> {
                Ok(s.conn()
                    .execute("UPDATE audit SET actor = 'someone else'", [])?)
            })
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");

        assert_eq!(db.write(|s| s.prune_audit(3)).await.unwrap(), 2);
    }

    #[test]
    fn actions_and_actors_read_as_written() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("Pause"), None);
        assert_eq!(Actor::Signal.name(), "signal");
        assert_eq!(Actor::Cli("root".into()).name(), "cli:root");
    }
}
