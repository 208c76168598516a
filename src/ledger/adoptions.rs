//! Accounts the fan-out adopted: found already existing in a target and linked to a SCIM
//! user instead of created. Written by the worker after the first update, read by the
//! admin API and the ledger CLI.

use rusqlite::params;
use serde::Serialize;

use super::{LedgerError, Store};

/// One takeover: which account, when, and what its first update changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Adoption {
    pub user_id: String,
    pub target: String,
    /// The target's id for the account.
    pub remote_id: String,
    pub adopted_at: i64,
    /// The fields the first update set to a value other than the one the account held; names
    /// only, so a password shows as `password`, never its value.
    pub changed: Vec<String>,
}

impl Store<'_> {
    /// Records a takeover; a later one of the same user on the same target (the account was
    /// deleted there and adopted again) replaces it.
    pub(crate) fn record_adoption(&self, adoption: &Adoption) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO adoptions (user_id, target, remote_id, adopted_at, changed) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, target) DO UPDATE SET \
                 remote_id = ?3, adopted_at = ?4, changed = ?5",
            )?
            .execute(params![
                adoption.user_id,
                adoption.target,
                adoption.remote_id,
                adoption.adopted_at,
                serde_json::to_string(&adoption.changed)?,
            ])?;
        Ok(())
    }

    /// The takeover of one user's account on one target, if the bridge adopted it.
    pub(crate) fn adoption(
        &self,
        user_id: &str,
        target: &str,
    ) -> Result<Option<Adoption>, LedgerError> {
        Ok(self
            .adoptions_of(user_id)?
            .into_iter()
            .find(|adoption| adoption.target == target))
    }

    /// The takeovers of one user, by target.
    pub(crate) fn adoptions_of(&self, user_id: &str) -> Result<Vec<Adoption>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT target, remote_id, adopted_at, changed FROM adoptions \
             WHERE user_id = ?1 ORDER BY target",
        )?;
        let rows = stmt
            .query_map([user_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(target, remote_id, adopted_at, changed)| {
                Ok(Adoption {
                    user_id: user_id.to_owned(),
                    target,
                    remote_id,
                    adopted_at,
                    changed: serde_json::from_str(&changed)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Db, DbOptions};

    #[tokio::test]
    async fn adoptions_round_trip_and_a_later_one_replaces_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("a.db"),
            readers: 1,
        })
        .unwrap();
        let first = Adoption {
            user_id: "u1".into(),
            target: "kibo".into(),
            remote_id: "k1".into(),
            adopted_at: 5,
            changed: vec!["firstName".into()],
        };
        let again = Adoption {
            remote_id: "k2".into(),
            adopted_at: 9,
            changed: Vec::new(),
            ..first.clone()
        };
        let (a, b) = (first.clone(), again.clone());
        db.write(move |s| s.record_adoption(&a)).await.unwrap();
        assert_eq!(db.read(|s| s.adoptions_of("u1")).await.unwrap(), [first]);
        db.write(move |s| s.record_adoption(&b)).await.unwrap();
        assert_eq!(db.read(|s| s.adoptions_of("u1")).await.unwrap(), [again]);
        assert!(db.read(|s| s.adoptions_of("u2")).await.unwrap().is_empty());
    }
}
