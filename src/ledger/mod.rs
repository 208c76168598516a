//! The SQLite store behind the bridge: SCIM resources, and (as the fan-out lands) the sync
//! ledger of what each target was asked and answered. rusqlite never leaves this folder.

mod adoptions;
mod attempts;
mod audit;
mod controls;
mod counts;
mod db;
mod deliveries;
mod held;
mod lifecycle;
mod migrations;
mod plan_queue;
mod reconcile;
mod resources;
mod secrets;
mod sqlite;
mod views;

pub(crate) use adoptions::Adoption;
pub(crate) use attempts::{Attempt, AttemptOutcome};
pub(crate) use audit::{Actor, AuditAction, AuditEntry, AuditOutcome, AuditQuery, Audited};
pub(crate) use controls::{CircuitState, TargetCircuit};
pub use db::{Db, DbOptions};
pub(crate) use deliveries::{Claimed, Delivery, Desired, DueRows, Omissions, TargetLag};
pub(crate) use held::GuardWindow;
pub(crate) use lifecycle::{DeliveryOp, DeliveryState, StateKey};
pub(crate) use plan_queue::Mark;
pub(crate) use reconcile::{AccountRead, FindingRow, RunRow};
pub use resources::{fold, GroupMember, Lookup, ResourceKind, ResourceRow, Store};
pub(crate) use secrets::SealedSecret;
pub use sqlite::{process_setup, ProcessSetup};
pub(crate) use views::{FailureGroup, MinuteCount, SearchField, UserHit};

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
    /// Found at start: the bridge would accept writes it cannot keep.
    #[error("the database {path} is not writable: {reason}")]
    NotWritable { path: String, reason: String },
    #[error(
        "the database {path} is locked by another process (another scim-bridge, or a tool \
         holding a write transaction or an exclusive lock, on the same file)"
    )]
    Locked { path: String },
    /// A write failed for a reason outside the request: the disk is full, the file went
    /// read-only, or the storage failed. Callers answer "try again later", not "bug".
    #[error("the database cannot take writes now: {0}")]
    Unavailable(String),
}

impl LedgerError {
    /// Whether this is a storage condition (full disk, I/O error, read-only file) rather
    /// than a fault of the request or of the code.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            LedgerError::Unavailable(_) => true,
            LedgerError::Sqlite(err) => db::is_storage_failure(err),
            LedgerError::Json(_)
            | LedgerError::Directory { .. }
            | LedgerError::NewerSchema { .. }
            | LedgerError::Commit(_)
            | LedgerError::WriterGone
            | LedgerError::NotWritable { .. }
            | LedgerError::Locked { .. } => false,
        }
    }
}
