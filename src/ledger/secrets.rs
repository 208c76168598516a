//! Sealed passwords waiting in the ledger until every target that maps them has them.

use rusqlite::{params, OptionalExtension};

use super::{LedgerError, Store};

/// An encrypted password waiting for its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedSecret {
    pub secret_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Store<'_> {
    pub(crate) fn store_secret(
        &self,
        user_id: &str,
        secret: &SealedSecret,
        now: i64,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO user_secrets (user_id, secret_id, nonce, ciphertext, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id) DO UPDATE SET \
                 secret_id = ?2, nonce = ?3, ciphertext = ?4, created_at = ?5",
            )?
            .execute(params![
                user_id,
                secret.secret_id,
                secret.nonce,
                secret.ciphertext,
                now
            ])?;
        Ok(())
    }

    pub(crate) fn secret(&self, user_id: &str) -> Result<Option<SealedSecret>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT secret_id, nonce, ciphertext FROM user_secrets WHERE user_id = ?1",
        )?;
        Ok(stmt
            .query_row([user_id], |row| {
                Ok(SealedSecret {
                    secret_id: row.get(0)?,
                    nonce: row.get(1)?,
                    ciphertext: row.get(2)?,
                })
            })
            .optional()?)
    }

    /// Erases a user's pending password once no delivery still waits to carry it, and no
    /// change still to be planned may hand it to one.
    pub(crate) fn erase_secret_if_delivered(&self, user_id: &str) -> Result<bool, LedgerError> {
        let erased = self
            .conn()
            .prepare_cached(
                "DELETE FROM user_secrets WHERE user_id = ?1 AND NOT EXISTS (\
                 SELECT 1 FROM deliveries d WHERE d.user_id = ?1 AND ((\
                 d.secret_id = user_secrets.secret_id \
                 AND (d.delivered_hash IS NULL OR d.delivered_hash != d.desired_hash)) \
                 OR (d.retain_secret = 1 AND d.operation != 'delete'))) \
                 AND NOT EXISTS (SELECT 1 FROM plan_queue q WHERE q.user_id = ?1)",
            )?
            .execute([user_id])?;
        Ok(erased > 0)
    }
}
