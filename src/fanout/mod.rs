//! Delivery of desired states to the targets: one worker per target, retries with backoff,
//! rate limits, dead letters, and passwords sealed until delivered.

pub mod backoff;
pub mod circuit;
pub mod concurrency;
pub mod guard;
pub(crate) mod listing;
pub mod operator;
pub(crate) mod outcomes;
pub mod report;
pub mod secrets;
pub mod worker;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use worker::Worker;

/// The running workers, one per target.
pub(crate) struct Fanout {
    workers: Vec<Worker>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.workers.iter().map(Worker::name).collect();
        f.debug_struct("Fanout").field("targets", &names).finish()
    }
}

impl Fanout {
    /// Starts every worker on the current runtime.
    pub(crate) fn start(workers: Vec<Worker>, poll: Duration) -> Fanout {
        let (stop, watching) = watch::channel(false);
        let tasks = workers
            .iter()
            .map(|worker| tokio::spawn(worker.clone().run(poll, watching.clone())))
            .collect();
        Fanout {
            workers,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Nudges the workers of `targets`: a change for them was just committed.
    pub(crate) fn wake(&self, targets: &[String]) {
        for worker in &self.workers {
            if targets.iter().any(|t| t == worker.name()) {
                worker.wake();
            }
        }
    }

    /// The listing of each target set to `list_first`, by target.
    pub(crate) fn lookups(&self) -> std::collections::BTreeMap<String, listing::LookupStatus> {
        self.workers
            .iter()
            .filter_map(|worker| Some((worker.name().to_owned(), worker.lookup_status()?)))
            .collect()
    }

    /// Stops taking new deliveries and waits up to `deadline` for those in flight. What is
    /// still in flight then stays due in the ledger and is delivered after the restart.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("deliveries still in flight at shutdown; they resume on the next start");
        }
    }
}
pub mod plan;
pub mod planner;
