//! The deprovisioning guard, asked by a target's worker once before it sends a disable or a
//! delete: past the target's threshold the deprovision is held in the ledger (not sent, not
//! lost) until an operator releases or discards it. Creates and updates never ask.

use crate::clock::{unix_millis, SharedClock};
use crate::ledger::{Db, Delivery, DeliveryOp, GuardWindow, LedgerError};
use crate::targets::config::GuardConfig;

/// The moment a target became held: which rule its window broke, and with what counts.
/// Returned by the guard and logged from this value alone, so what the operator reads and
/// what the tests assert are the same facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breach {
    pub target: String,
    pub rule: &'static str,
    pub sent: u64,
    pub limit: u64,
    pub accounts: u64,
    pub window_secs: u64,
}

impl Breach {
    /// What the operator is told to do about it.
    fn advice(&self) -> String {
        format!(
            "deprovisioning guard: disables and deletes to this target are held; review them \
             with `ledger held --target {}`, then release or discard them",
            self.target
        )
    }

    fn log(&self) {
        tracing::warn!(
            target_name = %self.target,
            rule = self.rule,
            sent = self.sent,
            limit = self.limit,
            accounts = self.accounts,
            window_secs = self.window_secs,
            "{}",
            self.advice()
        );
    }
}

/// What the guard says about one deprovision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// Held; `breach` is set when this deprovision is the one that held the target.
    Hold {
        breach: Option<Breach>,
    },
}

/// The most deprovisions one window may send to a target holding `accounts` accounts, and
/// the rule that sets it: `max_deprovisions`, or `max_percent` of the accounts but never
/// fewer than `percent_floor`.
pub(crate) fn limit(config: &GuardConfig, accounts: u64) -> (u64, &'static str) {
    let by_count = u64::from(config.max_deprovisions);
    let by_share =
        (accounts * u64::from(config.max_percent) / 100).max(u64::from(config.percent_floor));
    if by_share < by_count {
        (by_share, "max_percent")
    } else {
        (by_count, "max_deprovisions")
    }
}

/// Whether the guard looks at this delivery at all: a disable or delete of a user the
/// target has received. A user disabled before it ever reached the target is no account
/// lost, and an initial load full of inactive users must not hold the target.
fn guarded(delivery: &Delivery) -> bool {
    delivery.desired.operation != DeliveryOp::Upsert && delivery.delivered_hash.is_some()
}

/// Decides whether `delivery` may go, and logs the decision. Returns `true` to send it. A
/// ledger error keeps it back: it stays due and is asked again.
pub(crate) async fn admits(
    db: &Db,
    clock: &SharedClock,
    config: GuardConfig,
    delivery: &Delivery,
) -> bool {
    match ask(db, clock, config, delivery).await {
        Ok(Verdict::Send) => true,
        Ok(Verdict::Hold {
            breach: Some(breach),
        }) => {
            breach.log();
            false
        }
        Ok(Verdict::Hold { breach: None }) => {
            tracing::debug!(
                target_name = delivery.desired.target.as_str(),
                user = %delivery.desired.user_id,
                "deprovision held"
            );
            false
        }
        Err(err) => {
            tracing::error!(
                target_name = delivery.desired.target.as_str(),
                error = %err,
                "cannot ask the deprovisioning guard; the deprovision stays due"
            );
            false
        }
    }
}

/// Decides, in the one write that also records the decision, whether `delivery` may go.
async fn ask(
    db: &Db,
    clock: &SharedClock,
    config: GuardConfig,
    delivery: &Delivery,
) -> Result<Verdict, LedgerError> {
    if !config.enabled || !guarded(delivery) {
        return Ok(Verdict::Send);
    }
    let now = unix_millis(clock.as_ref());
    let asked = delivery.clone();
    db.write(move |s| -> Result<Verdict, LedgerError> {
        if s.guard_granted(&asked)? {
            return Ok(Verdict::Send);
        }
        let target = asked.desired.target.as_str();
        if s.held_count(target)? > 0 {
            s.hold(&asked, now)?;
            return Ok(Verdict::Hold { breach: None });
        }
        let window_ms = i64::try_from(config.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let GuardWindow { sent, deleted } =
            s.guard_window(target, now.saturating_sub(window_ms))?;
        let accounts = s.linked_accounts(target)? + deleted;
        let (limit, rule) = limit(&config, accounts);
        if sent < limit {
            s.grant_deprovision(&asked, now)?;
            return Ok(Verdict::Send);
        }
        s.hold(&asked, now)?;
        Ok(Verdict::Hold {
            breach: Some(Breach {
                target: target.to_owned(),
                rule,
                sent,
                limit,
                accounts,
                window_secs: config.window_secs,
            }),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use crate::clock::ManualClock;
    use crate::ledger::{
        Actor, Attempt, AttemptOutcome, DbOptions, DeliveryState, Desired, StateKey,
    };

    const TARGET: &str = "kibo";

    fn desired(user: usize, operation: DeliveryOp) -> Desired {
        Desired {
            user_id: format!("u{user}"),
            target: TARGET.into(),
            operation,
            payload: serde_json::Map::new(),
            create_only: Vec::new(),
            unmanaged: Vec::new(),
            password_field: None,
            secret_id: None,
            retain_secret: false,
            hash: StateKey::sample_of(operation, &user.to_string()),
            mapping_version: "m1".into(),
        }
    }

    struct Fixture {
        db: Db,
        clock: Arc<ManualClock>,
        shared: SharedClock,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        /// `users` accounts the target holds, each delivered once.
        async fn with_accounts(users: usize) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(&DbOptions {
                path: dir.path().join("g.db"),
                readers: 1,
            })
            .unwrap();
            let clock = Arc::new(ManualClock::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            ));
            db.write(move |s| {
                for user in 0..users {
                    let wanted = desired(user, DeliveryOp::Upsert);
                    s.set_desired(&wanted, 1)?;
                    s.record_attempt(
                        &Attempt {
                            at: 2,
                            user_id: wanted.user_id.clone(),
                            target: TARGET.into(),
                            operation: "upsert".into(),
                            status: Some(200),
                            duration_ms: 1,
                            outcome: "delivered".into(),
                            error: None,
                            payload_hash: wanted.hash.clone(),
                            mapping_version: "m1".into(),
                            sent: Some(wanted.payload.clone()),
                        },
                        &AttemptOutcome::Delivered {
                            remote_id: Some(format!("r{user}")),
                            status: Some(200),
                        },
                    )?;
                }
                Ok::<_, LedgerError>(())
            })
            .await
            .unwrap();
            Fixture {
                db,
                shared: clock.clone(),
                clock,
                _dir: dir,
            }
        }

        /// The identity provider deactivates `users`; returns their rows as a worker reads them.
        async fn deactivate(&self, users: std::ops::Range<usize>) -> Vec<Delivery> {
            let now = unix_millis(self.clock.as_ref());
            self.db
                .write(move |s| {
                    users
                        .map(|user| {
                            s.set_desired(&desired(user, DeliveryOp::Disable), now)?;
                            Ok::<_, LedgerError>(
                                s.delivery(&format!("u{user}"), TARGET)?.expect("row"),
                            )
                        })
                        .collect::<Result<Vec<_>, LedgerError>>()
                })
                .await
                .unwrap()
        }

        async fn admitted(&self, config: GuardConfig, rows: &[Delivery]) -> usize {
            let mut sent = 0;
            for row in rows {
                if admits(&self.db, &self.shared, config, row).await {
                    sent += 1;
                }
            }
            sent
        }

        async fn verdicts(&self, config: GuardConfig, rows: &[Delivery]) -> Vec<Verdict> {
            let mut verdicts = Vec::new();
            for row in rows {
                verdicts.push(ask(&self.db, &self.shared, config, row).await.unwrap());
            }
            verdicts
        }

        async fn held(&self) -> u64 {
            self.db.read(|s| s.held_count(TARGET)).await.unwrap()
        }
    }

    fn strict(max_deprovisions: u32) -> GuardConfig {
        GuardConfig {
            max_deprovisions,
            window_secs: 600,
            max_percent: 100,
            percent_floor: 1,
            enabled: true,
        }
    }

    #[tokio::test]
    async fn a_burst_is_held_at_the_threshold_and_creates_and_updates_are_never_asked() {
        let f = Fixture::with_accounts(20).await;
        let rows = f.deactivate(0..15).await;
        let verdicts = f.verdicts(strict(10), &rows).await;
        let sent = verdicts.iter().filter(|v| **v == Verdict::Send).count();
        assert_eq!(sent, 10);
        assert_eq!(f.held().await, 5);
        // The eleventh held the target, once, with the rule and the counts the log shows.
        let breaches: Vec<(usize, &Breach)> = verdicts
            .iter()
            .enumerate()
            .filter_map(|(at, verdict)| match verdict {
                Verdict::Hold {
                    breach: Some(breach),
                } => Some((at, breach)),
                _ => None,
            })
            .collect();
        assert_eq!(
            breaches,
            [(
                10,
                &Breach {
                    target: "kibo".into(),
                    rule: "max_deprovisions",
                    sent: 10,
                    limit: 10,
                    accounts: 20,
                    window_secs: 600,
                }
            )]
        );
        let advice = breaches[0].1.advice();
        for expected in ["deprovisioning guard", "ledger held --target kibo"] {
            assert!(advice.contains(expected), "{expected}: {advice}");
        }
        let held =
            f.db.read(|s| s.delivery("u14", TARGET))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(held.state, DeliveryState::Held);
        assert!(!held.is_due(i64::MAX), "a held row is not due");

        // A retry of one that was let through is neither counted nor held.
        assert_eq!(f.admitted(strict(10), &rows[..1]).await, 1);
        // Updates pass whatever the window says.
        let update =
            f.db.write(|s| {
                let mut changed = desired(16, DeliveryOp::Upsert);
                changed.hash = StateKey::sample("16b");
                s.set_desired(&changed, 5)?;
                Ok::<_, LedgerError>(s.delivery("u16", TARGET)?.expect("row"))
            })
            .await
            .unwrap();
        assert_eq!(f.admitted(strict(10), &[update]).await, 1);
        // While held, every further deprovision is held at once.
        let more = f.deactivate(15..17).await;
        assert_eq!(f.admitted(strict(10), &more).await, 0);
        assert_eq!(f.held().await, 7);
    }

    #[tokio::test]
    async fn the_window_moves_with_the_clock() {
        let f = Fixture::with_accounts(20).await;
        let first = f.deactivate(0..3).await;
        assert_eq!(f.admitted(strict(3), &first).await, 3);
        f.clock.advance(Duration::from_secs(601));
        let later = f.deactivate(3..6).await;
        assert_eq!(
            f.admitted(strict(3), &later).await,
            3,
            "the first three left the window"
        );
        assert_eq!(f.held().await, 0);
    }

    #[tokio::test]
    async fn the_share_counts_the_accounts_held_and_users_never_delivered_are_not_asked() {
        let f = Fixture::with_accounts(100).await;
        let share = GuardConfig {
            max_percent: 10,
            percent_floor: 5,
            ..strict(500)
        };
        let rows = f.deactivate(0..12).await;
        assert_eq!(f.admitted(share, &rows).await, 10);
        let never_delivered =
            f.db.write(|s| {
                s.set_desired(&desired(500, DeliveryOp::Disable), 1)?;
                Ok::<_, LedgerError>(s.delivery("u500", TARGET)?.expect("row"))
            })
            .await
            .unwrap();
        assert_eq!(f.admitted(share, &[never_delivered]).await, 1);
    }

    #[tokio::test]
    async fn released_ones_pass_once_without_holding_the_target_again() {
        let f = Fixture::with_accounts(20).await;
        let rows = f.deactivate(0..8).await;
        assert_eq!(f.admitted(strict(3), &rows).await, 3);
        let operator = crate::fanout::operator::Operator::new(
            f.db.clone(),
            f.shared.clone(),
            vec![TARGET.into()],
        );
        assert_eq!(
            operator
                .release(TARGET, &Actor::Cli("ops".into()))
                .await
                .unwrap(),
            5
        );
        let released: Vec<Delivery> =
            f.db.read(|s| s.due(TARGET, i64::MAX, 100, &HashSet::new())?.decode())
                .await
                .unwrap()
                .into_iter()
                .map(|claimed| claimed.delivery)
                .collect();
        assert_eq!(
            released.len(),
            8,
            "the five released and the three sent, not yet recorded"
        );
        assert_eq!(f.admitted(strict(3), &released).await, 8);
        assert_eq!(f.held().await, 0);
        // The window started afresh at the release: new deprovisions count from zero.
        let next = f.deactivate(8..12).await;
        assert_eq!(f.admitted(strict(3), &next).await, 3);
        assert_eq!(f.held().await, 1);
    }

    #[tokio::test]
    async fn a_discarded_deprovision_is_never_sent_and_a_reactivation_is_an_update() {
        let f = Fixture::with_accounts(5).await;
        let rows = f.deactivate(0..3).await;
        assert_eq!(f.admitted(strict(1), &rows).await, 1);
        let operator = crate::fanout::operator::Operator::new(
            f.db.clone(),
            f.shared.clone(),
            vec![TARGET.into()],
        );
        assert_eq!(
            operator
                .discard(TARGET, &Actor::Cli("ops".into()))
                .await
                .unwrap(),
            2
        );
        let row =
            f.db.read(|s| s.delivery("u2", TARGET))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("r2"), "still linked");
        let history = f.db.read(|s| s.history("u2", None, 5)).await.unwrap();
        assert_eq!(history[0].outcome, "discarded");
        // Re-activated: an update of the linked account is due.
        let due =
            f.db.write(|s| s.set_desired(&desired(2, DeliveryOp::Upsert), 10))
                .await
                .unwrap();
        assert!(due);
    }

    #[test]
    fn the_lower_of_the_count_and_the_share_holds_never_below_the_floor() {
        let config = GuardConfig::default();
        for (accounts, expected) in [
            (0, (20, "max_percent")),
            (30, (20, "max_percent")),
            (200, (40, "max_percent")),
            (1_000, (200, "max_percent")),
            (2_500, (500, "max_deprovisions")),
            (1_000_000, (500, "max_deprovisions")),
        ] {
            assert_eq!(limit(&config, accounts), expected, "{accounts} accounts");
        }
        let strict = GuardConfig {
            max_deprovisions: 5,
            ..config
        };
        assert_eq!(limit(&strict, 200), (5, "max_deprovisions"));
    }
}
