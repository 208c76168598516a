//! Read-only views the admin console shows beside the operator's: users found by an indexed
//! prefix, attempts per minute, and failures grouped by target and the target's own reason.

use rusqlite::params;
use serde::Serialize;
use serde_json::{Map, Value};

use super::resources::fold;
use super::{LedgerError, Store};

/// A JSON object as the ledger stores a payload.
type Body = Map<String, Value>;

/// What a user search matches on; each is one range over its own index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchField {
    /// `users.user_name_key` (case-insensitive).
    UserName,
    /// `user_emails.email_key` (case-insensitive).
    Email,
    /// `users.external_id` (exact case).
    ExternalId,
}

/// One user a search found. `key` and `seq` are where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserHit {
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub key: String,
    pub seq: i64,
}

/// Attempts of one target in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MinuteCount {
    pub target: String,
    /// Unix minute (milliseconds / 60,000).
    pub minute: i64,
    pub delivered: u64,
    pub failed: u64,
}

/// Rejected or dead deliveries of one target that failed for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FailureGroup {
    pub target: String,
    pub state: String,
    pub reason: Option<String>,
    pub status: Option<u16>,
    pub users: u64,
    pub latest: i64,
}

/// The upper end of a prefix range: every string starting with `prefix` sorts below it,
/// because no UTF-8 text continues past U+10FFFF.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl Store<'_> {
    /// The bodies last delivered to each target of `user_id` where they differ from the
    /// desired one (migration 10 keeps them only then), by target.
    pub(crate) fn delivered_payloads(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, Body)>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT target, delivered_payload FROM deliveries \
             WHERE user_id = ?1 AND delivered_payload IS NOT NULL ORDER BY target",
        )?;
        let raw = stmt
            .query_map([user_id], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
        raw.into_iter()
            .map(|(target, body)| Ok((target, serde_json::from_str(&body)?)))
            .collect()
    }

    /// Users whose `field` starts with `prefix`, in that field's order, after `after`
    /// (key, seq) when paging on.
    pub(crate) fn search_users(
        &self,
        field: SearchField,
        prefix: &str,
        after: Option<(&str, i64)>,
        limit: usize,
    ) -> Result<Vec<UserHit>, LedgerError> {
        let prefix = match field {
            SearchField::UserName | SearchField::Email => fold(prefix),
            SearchField::ExternalId => prefix.to_owned(),
        };
        let (after_key, after_seq) = after.unwrap_or(("", i64::MIN));
        let sql = match field {
            SearchField::UserName => {
                "SELECT id, user_name, external_id, user_name_key, seq FROM users \
                 WHERE user_name_key >= ?1 AND user_name_key < ?2 \
                 AND (user_name_key, seq) > (?3, ?4) ORDER BY user_name_key, seq LIMIT ?5"
            }
            SearchField::Email => {
                "SELECT u.id, u.user_name, u.external_id, e.email_key, u.seq \
                 FROM user_emails e JOIN users u ON u.seq = e.user_seq \
                 WHERE e.email_key >= ?1 AND e.email_key < ?2 \
                 AND (e.email_key, e.user_seq) > (?3, ?4) ORDER BY e.email_key, e.user_seq LIMIT ?5"
            }
            SearchField::ExternalId => {
                "SELECT id, user_name, external_id, external_id, seq FROM users \
                 WHERE external_id >= ?1 AND external_id < ?2 \
                 AND (external_id, seq) > (?3, ?4) ORDER BY external_id, seq LIMIT ?5"
            }
        };
        let mut stmt = self.conn().prepare_cached(sql)?;
        let hits = stmt
            .query_map(
                params![
                    prefix,
                    prefix_end(&prefix),
                    after_key,
                    after_seq,
                    limit as i64
                ],
                |row| {
                    Ok(UserHit {
                        id: row.get(0)?,
                        user_name: row.get(1)?,
                        external_id: row.get(2)?,
                        key: row.get(3)?,
                        seq: row.get(4)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(hits)
    }

    /// Delivered and failed attempts per target and minute since `since` (unix ms), from
    /// the attempt history's time index. A retry counts as a failure: it was one.
    pub(crate) fn attempts_per_minute(&self, since: i64) -> Result<Vec<MinuteCount>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT target, at / 60000, SUM(outcome = 'delivered'), SUM(outcome <> 'delivered') \
             FROM delivery_attempts WHERE at >= ?1 GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let counts = stmt
            .query_map([since], |row| {
                Ok(MinuteCount {
                    target: row.get(0)?,
                    minute: row.get(1)?,
                    delivered: row.get::<_, i64>(2)? as u64,
                    failed: row.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(counts)
    }

    /// Rejected and dead deliveries grouped by target, state and the target's error text,
    /// the largest groups first.
    pub(crate) fn failure_groups(&self, limit: usize) -> Result<Vec<FailureGroup>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT target, state, last_error, MAX(last_status), COUNT(*), MAX(updated_at) \
             FROM deliveries WHERE state IN ('rejected', 'dead') \
             GROUP BY target, state, last_error ORDER BY 5 DESC, 1, 2 LIMIT ?1",
        )?;
        let groups = stmt
            .query_map([limit as i64], |row| {
                Ok(FailureGroup {
                    target: row.get(0)?,
                    state: row.get(1)?,
                    reason: row.get(2)?,
                    status: row.get(3)?,
                    users: row.get::<_, i64>(4)? as u64,
                    latest: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(groups)
    }

    /// Up to `limit` users of one failure group: (user id, userName if the user still exists).
    pub(crate) fn failure_group_users(
        &self,
        target: &str,
        state: &str,
        reason: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT d.user_id, u.user_name FROM deliveries d LEFT JOIN users u ON u.id = d.user_id \
             WHERE d.target = ?1 AND d.state = ?2 AND d.last_error IS ?3 \
             ORDER BY d.updated_at DESC LIMIT ?4",
        )?;
        let users = stmt
            .query_map(params![target, state, reason, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{
        Attempt, AttemptOutcome, Db, DbOptions, DeliveryOp, DeliveryState, Desired, Lookup,
        ResourceKind, ResourceRow, StateKey,
    };

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("views.db"),
            readers: 1,
        })
        .unwrap();
        (dir, db)
    }

    async fn add_user(db: &Db, id: &str, name: &str, email: &str, external: Option<&str>) {
        let row = ResourceRow {
            id: id.to_owned(),
            version: 1,
            created: "2026-01-01T00:00:00Z".into(),
            last_modified: "2026-01-01T00:00:00Z".into(),
            body: serde_json::Map::new(),
        };
        let lookup = Lookup {
            name: name.to_owned(),
            external_id: external.map(str::to_owned),
            emails: vec![email.to_owned()],
        };
        db.write(move |s| s.insert(ResourceKind::User, &row, &lookup))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_search_takes_a_prefix_of_each_field_and_pages_on_from_the_last_hit() {
        let (_dir, db) = db();
        add_user(&db, "1", "Ana", "ana@b.example", Some("E-1")).await;
        add_user(&db, "2", "anabel", "bel@a.example", Some("E-2")).await;
        add_user(&db, "3", "Bruno", "ANA.b@c.example", None).await;

        let names = |hits: Vec<UserHit>| hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
        let search = |field, prefix: &'static str, after: Option<(String, i64)>| {
            db.read(move |s| {
                s.search_users(
                    field,
                    prefix,
                    after.as_ref().map(|(k, s)| (k.as_str(), *s)),
                    1,
                )
            })
        };
        let first = search(SearchField::UserName, "AN", None).await.unwrap();
        assert_eq!(names(first.clone()), ["1"]);
        let next = search(
            SearchField::UserName,
            "AN",
            Some((first[0].key.clone(), first[0].seq)),
        )
        .await
        .unwrap();
        assert_eq!(names(next.clone()), ["2"]);
        let last = search(
            SearchField::UserName,
            "AN",
            Some((next[0].key.clone(), next[0].seq)),
        )
        .await
        .unwrap();
        assert!(last.is_empty());

        let all_ana = db
            .read(|s| s.search_users(SearchField::Email, "ana", None, 10))
            .await
            .unwrap();
        assert_eq!(names(all_ana), ["3", "1"]);
        let external = db
            .read(|s| s.search_users(SearchField::ExternalId, "E-2", None, 10))
            .await
            .unwrap();
        assert_eq!(names(external), ["2"]);
        let none = db
            .read(|s| s.search_users(SearchField::ExternalId, "e-", None, 10))
            .await
            .unwrap();
        assert!(none.is_empty(), "externalId is compared in its own case");
    }

    /// u1's desired state on kibo, its payload and key both named `name`.
    fn wanted(name: &str) -> Desired {
        Desired {
            user_id: "u1".into(),
            target: "kibo".into(),
            operation: DeliveryOp::Upsert,
            payload: serde_json::json!({"firstName": name})
                .as_object()
                .cloned()
                .unwrap(),
            create_only: Vec::new(),
            unmanaged: Vec::new(),
            password_field: None,
            secret_id: None,
            retain_secret: false,
            hash: StateKey::sample(name),
            mapping_version: "m1".into(),
        }
    }

    async fn deliver(db: &Db, name: &str) {
        let attempt = Attempt {
            at: 5,
            user_id: "u1".into(),
            target: "kibo".into(),
            operation: "upsert".into(),
            status: Some(200),
            duration_ms: 1,
            outcome: "delivered".into(),
            error: None,
            payload_hash: StateKey::sample(name),
            mapping_version: "m1".into(),
            sent: Some(wanted(name).payload),
        };
        let outcome = AttemptOutcome::Delivered {
            remote_id: Some("r1".into()),
            status: Some(200),
        };
        db.write(move |s| s.record_attempt(&attempt, &outcome))
            .await
            .unwrap();
    }

    async fn set(db: &Db, name: &str) {
        let desired = wanted(name);
        db.write(move |s| s.set_desired(&desired, 1)).await.unwrap();
    }

    /// The body kept as delivered, as its `firstName`; `None`: none kept.
    async fn kept(db: &Db) -> Option<String> {
        let kept = db.read(|s| s.delivered_payloads("u1")).await.unwrap();
        kept.first()
            .map(|(_, body)| body["firstName"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn the_delivered_body_is_kept_only_while_a_change_is_pending() {
        let (_dir, db) = db();
        let first = wanted("Ana");
        db.write(move |s| s.set_first_desired(&first, 1))
            .await
            .unwrap();
        assert_eq!(kept(&db).await, None, "nothing delivered yet");
        deliver(&db, "Ana").await;
        assert_eq!(kept(&db).await, None, "delivered = desired");

        set(&db, "Bea").await;
        assert_eq!(kept(&db).await.as_deref(), Some("Ana"));
        set(&db, "Cleo").await;
        assert_eq!(
            kept(&db).await.as_deref(),
            Some("Ana"),
            "a second change keeps the body the target holds"
        );
        deliver(&db, "Cleo").await;
        assert_eq!(kept(&db).await, None);

        set(&db, "Dora").await;
        assert_eq!(kept(&db).await.as_deref(), Some("Cleo"));
        set(&db, "Cleo").await;
        assert_eq!(kept(&db).await, None, "back to what the target holds");
        let row = db
            .read(|s| s.delivery("u1", "kibo"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, DeliveryState::Delivered);

        // Delivered while the desired state moved on: the body sent is kept beside the new
        // desired one, until that one is delivered too.
        set(&db, "Eve").await;
        set(&db, "Fay").await;
        assert_eq!(kept(&db).await.as_deref(), Some("Cleo"));
        deliver(&db, "Eve").await;
        assert_eq!(kept(&db).await.as_deref(), Some("Eve"));
        let row = db
            .read(|s| s.delivery("u1", "kibo"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.delivered_hash, Some(StateKey::sample("Eve")));
        assert_eq!(row.desired.hash, StateKey::sample("Fay"));
        assert_eq!(row.state, DeliveryState::Pending, "Fay is still to be sent");
        deliver(&db, "Fay").await;
        assert_eq!(kept(&db).await, None);
    }

    #[tokio::test]
    async fn a_user_search_uses_an_index_for_every_field() {
        let (_dir, db) = db();
        for field in [
            SearchField::UserName,
            SearchField::Email,
            SearchField::ExternalId,
        ] {
            let plan = db
                .read(move |s| -> Result<Vec<String>, LedgerError> {
                    let sql = match field {
                        SearchField::UserName => "EXPLAIN QUERY PLAN SELECT seq FROM users WHERE user_name_key >= 'a' AND user_name_key < 'b' ORDER BY user_name_key, seq",
                        SearchField::Email => "EXPLAIN QUERY PLAN SELECT u.seq FROM user_emails e JOIN users u ON u.seq = e.user_seq WHERE e.email_key >= 'a' AND e.email_key < 'b' ORDER BY e.email_key, e.user_seq",
                        SearchField::ExternalId => "EXPLAIN QUERY PLAN SELECT seq FROM users WHERE external_id >= 'a' AND external_id < 'b' ORDER BY external_id, seq",
                    };
                    let mut stmt = s.conn().prepare(sql)?;
                    let rows = stmt
                        .query_map([], |row| row.get::<_, String>(3))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(rows)
                })
                .await
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains("USING"), "{field:?}: {plan}");
            assert!(!plan.contains("SCAN users"), "{field:?}: {plan}");
        }
    }
}
