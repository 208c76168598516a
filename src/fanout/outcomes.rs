//! Recording a worker's delivery outcomes: the outcomes that end while one group is being
//! written go to the ledger together, in one write of the next group.
//!
//! One write per outcome cost the writer a savepoint, a copy of every page the write
//! touched into the savepoint's journal, and an answer each; and every delivery waits for
//! the writer's round trips (BENCHMARKS.md, "Outcomes recorded in groups"). The first delivery
//! that finds no group being written writes the group, and the next ones while any wait;
//! the others wait for their answer. Every delivery still returns only once its own outcome
//! is committed. Should a group's write fail, each of its outcomes is written alone, so
//! that one refused outcome does not take the others with it.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::ledger::{Attempt, AttemptOutcome, Db, LedgerError, Store, TargetCircuit};

/// What one finished delivery leaves in the ledger.
pub(crate) struct Outcome {
    /// The target's circuit after this answer, when it changed.
    pub circuit: Option<(String, TargetCircuit)>,
    pub attempt: Attempt,
    pub outcome: AttemptOutcome,
    /// Whether the delivery may have been the last one to need the user's sealed password.
    pub may_free_secret: bool,
}

impl Outcome {
    fn write(&self, store: &Store<'_>) -> Result<(), LedgerError> {
        if let Some((target, circuit)) = &self.circuit {
            store.set_circuit(target, circuit)?;
        }
        store.record_attempt(&self.attempt, &self.outcome)?;
        if self.may_free_secret {
            store.erase_secret_if_delivered(&self.attempt.user_id)?;
        }
        Ok(())
    }
}

type Waiting = (Outcome, oneshot::Sender<Result<(), LedgerError>>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A delivery is writing groups: the outcomes queued meanwhile are its next group.
    writing: bool,
}

/// One target's outcomes on their way to the ledger. Cheap to share.
#[derive(Default)]
pub(crate) struct Recorder {
    queue: Mutex<Queue>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `outcome`, with the others that end meanwhile; returns once it is committed.
    pub(crate) async fn record(&self, db: &Db, outcome: Outcome) -> Result<(), LedgerError> {
        let (answer, answered) = oneshot::channel();
        let leads = {
            let mut queue = self.lock();
            queue.waiting.push((outcome, answer));
            !std::mem::replace(&mut queue.writing, true)
        };
        if leads {
            let mut writing = Writing {
                recorder: self,
                done: false,
            };
            loop {
                let group = {
                    let mut queue = self.lock();
                    if queue.waiting.is_empty() {
                        // Under the lock: an outcome queued after this leads the next group.
                        queue.writing = false;
                        writing.done = true;
                        break;
                    }
                    std::mem::take(&mut queue.waiting)
                };
                write_group(db, group).await;
            }
        }
        answered.await.unwrap_or(Err(LedgerError::WriterGone))
    }
}

/// The delivery writing the groups. Should its task be dropped before the queue is empty,
/// the outcomes waiting are answered rather than left waiting for a writer that is gone
/// (their rows stay due and are sent again), and the next outcome leads.
struct Writing<'a> {
    recorder: &'a Recorder,
    done: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self.recorder.lock();
        queue.writing = false;
        for (_, answer) in queue.waiting.drain(..) {
            let _ = answer.send(Err(LedgerError::WriterGone));
        }
    }
}

/// Writes a group in one write; if that fails, each outcome alone.
async fn write_group(db: &Db, group: Vec<Waiting>) {
    let (outcomes, answers): (Vec<Outcome>, Vec<_>) = group.into_iter().unzip();
    let outcomes = Arc::new(outcomes);
    let all = Arc::clone(&outcomes);
    let written = db
        .write(move |store| all.iter().try_for_each(|outcome| outcome.write(store)))
        .await;
    let answers = match (written, answers.len()) {
        (Ok(()), _) => {
            for answer in answers {
                let _ = answer.send(Ok(()));
            }
            return;
        }
        (Err(err), 1) => {
            if let Some(answer) = answers.into_iter().next() {
                let _ = answer.send(Err(err));
            }
            return;
        }
        (Err(err), _) => {
            tracing::warn!(error = %err, outcomes = answers.len(), "a group of outcomes could not be recorded; recording each alone");
            answers
        }
    };
    for (index, answer) in answers.into_iter().enumerate() {
        let outcomes = Arc::clone(&outcomes);
        let written = db.write(move |store| outcomes[index].write(store)).await;
        let _ = answer.send(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{DbOptions, DeliveryOp, StateKey};

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("o.db"),
            readers: 1,
        })
        .unwrap();
        (dir, db)
    }

    fn outcome(user: &str) -> Outcome {
        Outcome {
            circuit: None,
            attempt: Attempt {
                at: 1,
                user_id: user.to_owned(),
                target: "kibo".into(),
                operation: "upsert".into(),
                status: Some(201),
                duration_ms: 3,
                outcome: "delivered".into(),
                error: None,
                payload_hash: StateKey::new(DeliveryOp::Upsert, &"a".repeat(64), None),
                mapping_version: "m".into(),
                sent: None,
            },
            outcome: AttemptOutcome::Delivered {
                remote_id: Some(format!("r-{user}")),
                status: Some(201),
            },
            may_free_secret: false,
        }
    }

    async fn recorded(db: &Db, user: &str) -> usize {
        let user = user.to_owned();
        db.read(move |s| s.history(&user, None, 10))
            .await
            .unwrap()
            .len()
    }

    /// Outcomes ending together are each committed before their delivery returns, and one
    /// the ledger refuses fails alone: its group is written again outcome by outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outcomes_ending_together_are_recorded_and_a_refused_one_fails_alone() {
        let (_dir, db) = open();
        // TEMP triggers run on the writer: this one refuses the outcome of user "bad".
        db.write(|s| {
            s.execute_for_tests(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.delivery_attempts \
                 WHEN NEW.user_id = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
        })
        .await
        .unwrap();
        let recorder = Arc::new(Recorder::default());
        let users: Vec<String> = (0..40)
            .map(|n| {
                if n == 17 {
                    "bad".into()
                } else {
                    format!("u{n}")
                }
            })
            .collect();
        let answers = futures_util::future::join_all(users.iter().map(|user| {
            let (recorder, db, user) = (Arc::clone(&recorder), db.clone(), user.clone());
            tokio::spawn(async move { recorder.record(&db, outcome(&user)).await })
        }))
        .await;
        for (user, answer) in users.iter().zip(answers) {
            let answer = answer.unwrap();
            if user == "bad" {
                assert!(answer.unwrap_err().to_string().contains("refused"));
                assert_eq!(recorded(&db, user).await, 0);
            } else {
                answer.unwrap();
                assert_eq!(recorded(&db, user).await, 1, "{user}");
            }
        }
        let queue = recorder.lock();
        assert!(queue.waiting.is_empty() && !queue.writing);
    }

    /// The delivery writing the groups is dropped mid-write: the outcomes queued behind it
    /// are answered, and the next outcome is written.
    #[tokio::test]
    async fn a_dropped_writer_answers_the_outcomes_waiting_behind_it() {
        let (_dir, db) = open();
        // Holds the writer, so that the leader's write waits for it.
        let (entered, inside) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |_| {
                    let _ = entered.send(());
                    let _ = released.recv();
                    Ok::<_, LedgerError>(())
                })
                .await
            })
        };
        inside.await.unwrap();
        let recorder = Arc::new(Recorder::default());
        let leader = {
            let (recorder, db) = (Arc::clone(&recorder), db.clone());
            tokio::spawn(async move { recorder.record(&db, outcome("u1")).await })
        };
        // On this single-threaded runtime the leader now waits for the writer.
        tokio::task::yield_now().await;
        assert!(recorder.lock().writing);
        let queued = {
            let (recorder, db) = (Arc::clone(&recorder), db.clone());
            tokio::spawn(async move { recorder.record(&db, outcome("u2")).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(recorder.lock().waiting.len(), 1);
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert!(queued.await.unwrap().is_err());
        assert!(!recorder.lock().writing);
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();

        recorder.record(&db, outcome("u3")).await.unwrap();
        assert_eq!(recorded(&db, "u3").await, 1);
    }
}
