//! Accept -> plan -> deliver: the task that turns the users SCIM writes marked into desired
//! states. It takes the oldest marks in bounded batches, renders the users as stored for
//! every target on a blocking thread, records each batch in one writer transaction, and
//! wakes the targets' workers. Marks left by a crash are planned at the next start.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{unix_millis, SharedClock};
use crate::fanout::plan::{Planner, Rendered};
use crate::fanout::Fanout;
use crate::ledger::{Db, LedgerError, Mark};
use crate::scim::hook::{UserView, Woken};
use crate::scim::service::stored_user;

/// Users planned per writer transaction. Each costs the writer four desired-state rows, and
/// a SCIM write queued behind a batch waits for all of it: 64 held the writer long enough to
/// halve the creates a burst got through (BENCHMARKS.md, "the planner's batch"), while 16
/// planned as fast as 64 end to end.
const BATCH: usize = 16;

/// The planner's pause between two batches while SCIM writes mark users faster than it plans
/// them.
const BURST_PAUSE: Duration = Duration::from_millis(25);

/// How long the planner waits before trying again after the ledger refused a batch (a full
/// disk, say), unless a new write wakes it sooner.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A marked user as read, with its rendering: `None` for a user deleted since it was marked.
type Planned = (Mark, Option<(Value, Rendered)>);

/// The running planner: its wake-up, given to the write hook, and its stop.
pub(crate) struct Planning {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Planning {
    /// What a committed write notifies to have its marks planned.
    pub(crate) fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Lets the batch in flight be recorded (or fail: one transaction either way) and plans
    /// no other, waiting up to `deadline`. The marks not reached stay in the ledger for the
    /// next start. Past the deadline the task is dropped where it waits: a batch handed to
    /// the writer still commits whole or not at all.
    pub(crate) async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            abort.abort();
            tracing::warn!("the planner was still at work at shutdown; its marks are planned on the next start");
        }
    }
}

/// Starts the planner on the current runtime. It first plans every mark left from before,
/// then whatever its wake-up is notified for, until it is shut down.
pub(crate) fn start(
    planner: Arc<Planner>,
    db: Db,
    fanout: Arc<Fanout>,
    clock: SharedClock,
) -> Planning {
    let wake = Arc::new(Notify::new());
    let (stop, stopping) = watch::channel(false);
    let task = PlanLoop {
        planner,
        db,
        fanout,
        clock,
        wake: Arc::clone(&wake),
        stopping,
    };
    Planning {
        wake,
        stop,
        task: tokio::spawn(task.run()),
    }
}

struct PlanLoop {
    planner: Arc<Planner>,
    db: Db,
    fanout: Arc<Fanout>,
    clock: SharedClock,
    wake: Arc<Notify>,
    stopping: watch::Receiver<bool>,
}

impl PlanLoop {
    async fn run(mut self) {
        loop {
            let pause = match self.drain().await {
                // A write committed since the last read left a permit: nothing is missed.
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(error = %err, "planning failed; the marks stay and are planned again");
                    Some(RETRY_AFTER_FAILURE)
                }
            };
            if self.stopped() {
                return;
            }
            let wake = &self.wake;
            let woken = async {
                match pause {
                    None => wake.notified().await,
                    Some(pause) => {
                        let _ = tokio::time::timeout(pause, wake.notified()).await;
                    }
                }
            };
            tokio::select! {
                () = woken => {}
                // A dropped `Planning` stops the planner as a shutdown does.
                _ = self.stopping.changed() => return,
            }
        }
    }

    fn stopped(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Plans batches until no mark is left or the planner is stopped.
    async fn drain(&self) -> Result<(), LedgerError> {
        let mut burst = Burst::default();
        while !self.stopped() {
            let (waiting, marked) = self
                .db
                .read(|store| {
                    let waiting = store.planning()?;
                    let marked = store
                        .marks(BATCH)?
                        .into_iter()
                        .map(|mark| {
                            let user = stored_user(store, &mark.user_id)?;
                            Ok((mark, user))
                        })
                        .collect::<Result<Vec<_>, LedgerError>>()?;
                    Ok::<_, LedgerError>((waiting, marked))
                })
                .await?;
            if marked.is_empty() {
                return Ok(());
            }
            if burst.in_burst(waiting, marked.len() as u64) {
                tokio::time::sleep(BURST_PAUSE).await;
            }
            let planner = Arc::clone(&self.planner);
            let planned = tokio::task::spawn_blocking(move || render(&planner, marked))
                .await
                .map_err(|err| LedgerError::Commit(format!("rendering failed: {err}")))?;
            let planner = Arc::clone(&self.planner);
            let now = unix_millis(self.clock.as_ref());
            let due = self
                .db
                .write_behind(move |store| {
                    let mut due = Vec::new();
                    for (mark, user) in planned {
                        // Marked again since it was read: planned again from the newer read.
                        if !store.clear_mark(&mark)? {
                            continue;
                        }
                        if let Some((resource, rendered)) = user {
                            if let Some(user) = UserView::of(&resource) {
                                due.extend(
                                    planner.plan_marked(store, &user, rendered, &mark, now)?,
                                );
                            }
                        }
                        // A password no target took (none maps it, or the user is out of
                        // their scope) is not kept.
                        if mark.fresh_secret.is_some() {
                            store.erase_secret_if_delivered(&mark.user_id)?;
                        }
                    }
                    Ok::<_, LedgerError>(due)
                })
                .await?;
            let woken = Woken::new(due);
            if !woken.targets().is_empty() {
                self.fanout.wake(woken.targets());
            }
        }
        Ok(())
    }
}

/// Whether SCIM writes mark users faster than the planner plans them: as many marks as a
/// batch arrived between two reads. The planner then pauses between batches, so that the
/// burst keeps the CPU and its answers stay fast (the accept path's p99, BENCHMARKS.md); the
/// marks wait in the ledger, and once the burst ends the planner goes at full speed.
#[derive(Debug, Default)]
struct Burst {
    /// The marks waiting at the last read, and how many of them that batch took.
    last: Option<(u64, u64)>,
}

impl Burst {
    fn in_burst(&mut self, waiting: u64, taken: u64) -> bool {
        let arrived = self
            .last
            .map(|(before, planned)| (waiting + planned).saturating_sub(before));
        self.last = Some((waiting, taken));
        arrived.is_some_and(|arrived| arrived >= BATCH as u64)
    }
}

fn render(planner: &Planner, marked: Vec<(Mark, Option<Value>)>) -> Vec<Planned> {
    marked
        .into_iter()
        .map(|(mark, resource)| {
            let rendered = resource.and_then(|resource| {
                let rendered = UserView::of(&resource).map(|user| planner.render_changed(&user));
                rendered.map(|rendered| (resource, rendered))
            });
            (mark, rendered)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::fanout::plan::FanoutHook;
    use crate::fanout::secrets::SecretBox;
    use crate::ledger::{DbOptions, DeliveryOp, Lookup, ResourceKind, ResourceRow};
    use crate::mapping::MappingSet;
    use crate::scim::hook::{Change, WriteHook};

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Db,
        hook: Arc<FanoutHook>,
        planning: PlanLoop,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("p.db"),
            readers: 1,
        })
        .unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let mappings =
            MappingSet::load_dir(&shipped, &crate::mapping::commands::builtin_schemas()).unwrap();
        let planner = Arc::new(Planner::new(
            mappings,
            Arc::new(SecretBox::from_key(&[3; 32])),
        ));
        let fanout = Arc::new(Fanout::start(Vec::new(), Duration::from_secs(60)));
        let wake = Arc::new(Notify::new());
        let hook = Arc::new(FanoutHook::new(
            Arc::clone(&planner),
            Arc::clone(&fanout),
            Arc::clone(&wake),
        ));
        let planning = PlanLoop {
            planner,
            db: db.clone(),
            fanout,
            clock: Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)),
            wake,
            stopping: watch::channel(false).1,
        };
        Fixture {
            _dir: dir,
            db,
            hook,
            planning,
        }
    }

    impl Fixture {
        /// Stores user `id` and hands the write to the hook, as a SCIM create does.
        async fn create(&self, id: &str, password: Option<&str>) -> Woken {
            let (hook, id, password) = (
                Arc::clone(&self.hook),
                id.to_owned(),
                password.map(|p| SecretString::from(p.to_owned())),
            );
            self.db
                .write(move |store| {
                    let body = json!({
                        "userName": id, "active": true,
                        "name": {"givenName": "Ana", "familyName": "Lima"},
                        "emails": [{"value": format!("{id}@example.com"), "primary": true}],
                    });
                    let row = ResourceRow {
                        id: id.clone(),
                        version: 1,
                        created: "t".into(),
                        last_modified: "t".into(),
                        body: body.as_object().unwrap().clone(),
                    };
                    let lookup = Lookup {
                        name: id.clone(),
                        ..Lookup::default()
                    };
                    store.insert(ResourceKind::User, &row, &lookup)?;
                    let mut resource = body;
                    resource["id"] = json!(id);
                    let user = UserView::of(&resource).unwrap();
                    let change = Change::User {
                        user,
                        password: password.as_ref(),
                        created: true,
                    };
                    hook.record(store, change, 1)
                })
                .await
                .unwrap()
        }

        /// Deletes user `id` and hands the deletion to the hook, as a SCIM delete does.
        async fn delete(&self, id: &str) -> Woken {
            let (hook, id) = (Arc::clone(&self.hook), id.to_owned());
            self.db
                .write(move |store| {
                    let resource = stored_user(store, &id)?.unwrap();
                    store.delete(ResourceKind::User, &id)?;
                    hook.record(
                        store,
                        Change::UserDeleted(UserView::of(&resource).unwrap()),
                        2,
                    )
                })
                .await
                .unwrap()
        }

        /// Starts a planner task on the fixture's ledger, as `Application::build` does.
        fn start(&self) -> Planning {
            start(
                Arc::clone(&self.planning.planner),
                self.db.clone(),
                Arc::clone(&self.planning.fanout),
                Arc::clone(&self.planning.clock),
            )
        }

        /// Of users u0 to u39, those with a desired state on every target, and the marks
        /// left.
        async fn planned_and_marked(&self) -> (u64, u64) {
            self.db
                .read(|s| {
                    let mut planned = 0;
                    for user in 0..40 {
                        match s.deliveries_of(&format!("u{user}"))?.len() {
                            0 => {}
                            4 => planned += 1,
                            partly => panic!("u{user} planned for {partly} targets"),
                        }
                    }
                    Ok::<_, LedgerError>((planned, s.planning()?))
                })
                .await
                .unwrap()
        }

        /// Rows per target, the marks left and whether a sealed password is held.
        async fn ledger(&self, id: &str) -> (Vec<(String, DeliveryOp)>, u64, bool) {
            let id = id.to_owned();
            self.db
                .read(move |s| {
                    let rows = s
                        .deliveries_of(&id)?
                        .into_iter()
                        .map(|d| (d.desired.target, d.desired.operation))
                        .collect();
                    Ok::<_, LedgerError>((rows, s.planning()?, s.secret(&id)?.is_some()))
                })
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_write_only_marks_the_user_and_the_planner_records_every_target() {
        let f = fixture();
        let woken = f.create("u1", Some("Pa55word!x")).await;
        assert!(woken.needs_planning() && woken.targets().is_empty());
        let (rows, marks, sealed) = f.ledger("u1").await;
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!(marks, 1);
        assert!(sealed, "the password is sealed in the write itself");

        f.planning.drain().await.unwrap();
        let (rows, marks, sealed) = f.ledger("u1").await;
        let targets: Vec<_> = rows.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(targets, ["appgate", "kibo", "primavera", "vikingcloud"]);
        assert!(rows.iter().all(|(_, op)| *op == DeliveryOp::Upsert));
        assert_eq!(marks, 0);
        assert!(sealed, "kept for the targets that take it");
    }

    #[tokio::test]
    async fn a_user_deleted_before_it_was_planned_leaves_nothing_to_deliver() {
        let f = fixture();
        f.create("u1", Some("Pa55word!x")).await;
        let woken = f.delete("u1").await;
        assert_eq!(woken, Woken::default());
        f.planning.drain().await.unwrap();
        assert_eq!(f.ledger("u1").await, (Vec::new(), 0, false));
    }

    #[tokio::test]
    async fn a_user_deleted_after_planning_is_recorded_in_the_delete_itself() {
        let f = fixture();
        f.create("u1", None).await;
        f.planning.drain().await.unwrap();
        let woken = f.delete("u1").await;
        assert_eq!(woken.targets().len(), 4, "{woken:?}");
        let (rows, marks, _) = f.ledger("u1").await;
        assert_eq!(marks, 0);
        assert!(
            rows.iter().all(|(_, op)| *op != DeliveryOp::Upsert),
            "{rows:?}"
        );
    }

    #[test]
    fn a_burst_is_as_many_marks_as_a_batch_arriving_between_two_reads() {
        let mut burst = Burst::default();
        assert!(
            !burst.in_burst(100, 16),
            "the first read has nothing to compare with"
        );
        // 100 waited, 16 were planned: 84 left, so 84 + 16 waiting now means 16 arrived.
        assert!(burst.in_burst(100, 16));
        assert!(!burst.in_burst(99, 16), "15 arrived");
        // A backlog being worked off, nothing arriving.
        assert!(!burst.in_burst(83, 16));
        assert!(!burst.in_burst(67, 16));
        // The last marks of a quiet spell.
        assert!(!burst.in_burst(3, 3));
        assert!(!burst.in_burst(0, 0));
    }

    /// The planner is shut down while its first batch waits for the ledger: that batch is
    /// recorded whole, no other is started, nothing writes after the shutdown (the
    /// checkpoint empties the log), and the marks not reached are planned by the next start.
    #[tokio::test]
    async fn a_shutdown_records_the_batch_in_flight_and_leaves_the_other_marks() {
        let f = fixture();
        for user in 0..40 {
            f.create(&format!("u{user}"), None).await;
        }
        // Holds the only reader, so the planner's first read waits for it.
        let (entered, inside) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let db = f.db.clone();
        let reader = tokio::spawn(async move {
            db.read(move |_| {
                let _ = entered.send(());
                let _ = released.recv();
                Ok::<_, LedgerError>(())
            })
            .await
        });
        inside.await.unwrap();
        let planning = f.start();
        // On this single-threaded runtime the planner now runs up to its wait for a reader.
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        planning.shutdown(Duration::from_secs(30)).await;
        reader.await.unwrap().unwrap();
        assert_eq!(f.planned_and_marked().await, (16, 24));

        f.db.checkpoint().await.unwrap();
        let wal = std::fs::metadata(f._dir.path().join("p.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "a write after the shutdown");
        assert_eq!(f.planned_and_marked().await, (16, 24));

        f.planning.drain().await.unwrap();
        assert_eq!(f.planned_and_marked().await, (40, 0));
    }
}
