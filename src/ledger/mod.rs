//! The SQLite store behind the bridge: SCIM resources, and (as the fan-out lands) the sync
//! ledger of what each target was asked and answered. rusqlite never leaves this folder.

mod db;
mod deliveries;
mod migrations;
mod resources;

pub use db::{Db, DbOptions};
pub use deliveries::{
    Attempt, AttemptOutcome, CircuitState, Delivery, DeliveryOp, DeliveryState, Desired,
    SealedSecret, TargetCircuit, TargetLag, PASSWORD_MARK,
};
pub use resources::{fold, GroupMember, Lookup, ResourceKind, ResourceRow, Store};

/// Errors of the storage layer. Callers turn them into their own layer's error.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the database is at schema version {found}, newer than this build supports ({supported}); \
         refusing to touch it: run a newer scim-bridge"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    WriterGone,
}
