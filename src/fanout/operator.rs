//! The operator's view of the fan-out: what each target holds or lacks, what failed and why,
//! replay and pause. Shared by the admin HTTP API and the `ledger` CLI, which may run against
//! the database of a running or a stopped bridge.

use serde::Serialize;

use crate::clock::{unix_millis, SharedClock};
use crate::ledger::{
    Adoption, Attempt, Db, Delivery, DeliveryState, LedgerError, Omissions, TargetLag,
};

/// How many rows a listing returns at most.
const LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct UserStatus {
    pub user_id: String,
    pub deliveries: Vec<Delivery>,
    pub history: Vec<Attempt>,
    /// The targets where the bridge took over an existing account for this user.
    pub adoptions: Vec<Adoption>,
}

/// What to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplayRequest {
    pub user_id: Option<String>,
    pub target: Option<String>,
    /// Only dead letters (`true`), or rejected ones too (`false`).
    pub dead_only: bool,
}

#[derive(Clone)]
pub(crate) struct Operator {
    db: Db,
    clock: SharedClock,
    targets: Vec<String>,
}

impl Operator {
    pub(crate) fn new(db: Db, clock: SharedClock, targets: Vec<String>) -> Operator {
        Operator { db, clock, targets }
    }

    pub(crate) fn targets(&self) -> &[String] {
        &self.targets
    }

    pub(crate) async fn lag(&self) -> Result<Vec<TargetLag>, LedgerError> {
        let targets = self.targets.clone();
        self.db
            .read(move |s| targets.iter().map(|t| s.lag(t)).collect())
            .await
    }

    pub(crate) async fn user(&self, user_id: &str) -> Result<UserStatus, LedgerError> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |s| {
                Ok(UserStatus {
                    deliveries: s.deliveries_of(&user_id)?,
                    history: s.history(&user_id, None, 100)?,
                    adoptions: s.adoptions_of(&user_id)?,
                    user_id,
                })
            })
            .await
    }

    pub(crate) async fn list(
        &self,
        states: &[DeliveryState],
        target: Option<&str>,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let states = states.to_vec();
        let target = target.map(str::to_owned);
        self.db
            .read(move |s| s.deliveries_in(&states, target.as_deref(), LIST_LIMIT))
            .await
    }

    /// Per target and field, how many users are sent without it because their value could
    /// not be mapped.
    pub(crate) async fn omissions(&self) -> Result<Vec<Omissions>, LedgerError> {
        self.db.read(|s| s.omissions()).await
    }

    /// Makes matching rejected / dead deliveries due now; returns how many.
    pub(crate) async fn replay(&self, request: ReplayRequest) -> Result<usize, LedgerError> {
        let now = unix_millis(self.clock.as_ref());
        let states = if request.dead_only {
            vec![DeliveryState::Dead]
        } else {
            vec![DeliveryState::Dead, DeliveryState::Rejected]
        };
        self.db
            .write(move |s| {
                s.replay(
                    request.user_id.as_deref(),
                    request.target.as_deref(),
                    &states,
                    now,
                )
            })
            .await
    }

    pub(crate) async fn set_paused(&self, target: &str, paused: bool) -> Result<(), LedgerError> {
        let target = target.to_owned();
        self.db.write(move |s| s.set_paused(&target, paused)).await
    }
}
