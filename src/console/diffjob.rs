//! A proposed mapping's diff over every stored user, run in the background: the mappings
//! page starts it (one at a time per proposed text), a small status fragment polled by htmx
//! shows its progress, it can be cancelled, and when done its page shows the diff. The work
//! is `mapping::commands::diff_users_told`, the same as `mappings diff`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::clock::{unix_millis, SharedClock};
use crate::mapping::commands::{diff_users_told, DiffReport};
use crate::mapping::MappingSet;
use crate::scim::service::ScimService;

/// Changed users listed by name in a diff, per target.
const SAMPLES: usize = 20;

/// Jobs kept, finished ones included, so their results stay readable for a while; the
/// oldest finished one goes first.
const KEPT: usize = 16;

/// How a job ended.
pub(super) enum Ended {
    Done(DiffReport),
    Failed(String),
    Cancelled,
}

/// One diff, running or ended.
pub(super) struct DiffJob {
    pub id: u64,
    pub target: String,
    /// The proposed text and the hash of the file it started from, to show the form again.
    pub text: String,
    pub base: String,
    key: String,
    pub started_at: i64,
    scanned: AtomicU64,
    total: AtomicU64,
    cancel: AtomicBool,
    ended: Mutex<Option<(i64, Ended)>>,
}

impl DiffJob {
    /// Users scanned so far, and how many are stored.
    pub(super) fn progress(&self) -> (u64, u64) {
        (
            self.scanned.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// When it ended and how; `None` while it runs.
    pub(super) fn ended(&self) -> MutexGuard<'_, Option<(i64, Ended)>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> bool {
        self.ended().is_none()
    }
}

/// The console's diff jobs.
pub(super) struct DiffJobs {
    clock: SharedClock,
    jobs: Mutex<(u64, BTreeMap<u64, Arc<DiffJob>>)>,
}

fn key(target: &str, text: &str) -> String {
    hex::encode(Sha256::digest(format!("{target}\n{text}").as_bytes()))
}

impl DiffJobs {
    pub(super) fn new(clock: SharedClock) -> DiffJobs {
        DiffJobs {
            clock,
            jobs: Mutex::new((0, BTreeMap::new())),
        }
    }

    pub(super) fn now(&self) -> i64 {
        unix_millis(self.clock.as_ref())
    }

    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Arc<DiffJob>>)> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: u64) -> Option<Arc<DiffJob>> {
        self.lock().1.get(&id).cloned()
    }

    /// Starts the diff of `next` against `current` for `text`, unless one for the same text
    /// is running: then that one is returned, so a second click does not scan twice.
    pub(super) fn start(
        &self,
        target: &str,
        text: &str,
        base: &str,
        current: Arc<MappingSet>,
        next: MappingSet,
        service: ScimService,
    ) -> Arc<DiffJob> {
        let key = key(target, text);
        let job = {
            let mut guard = self.lock();
            let (next_id, jobs) = &mut *guard;
            if let Some(running) = jobs.values().find(|j| j.key == key && j.running()) {
                return Arc::clone(running);
            }
            *next_id += 1;
            let job = Arc::new(DiffJob {
                id: *next_id,
                target: target.to_owned(),
                text: text.to_owned(),
                base: base.to_owned(),
                key,
                started_at: self.now(),
                scanned: AtomicU64::new(0),
                total: AtomicU64::new(0),
                cancel: AtomicBool::new(false),
                ended: Mutex::new(None),
            });
            jobs.insert(job.id, Arc::clone(&job));
            while jobs.len() > KEPT {
                let Some(oldest) = jobs.values().find(|j| !j.running()).map(|j| j.id) else {
                    break;
                };
                jobs.remove(&oldest);
            }
            job
        };
        let clock = Arc::clone(&self.clock);
        let running = Arc::clone(&job);
        tokio::spawn(async move {
            let go_on = |scanned: u64, total: u64| {
                running.scanned.store(scanned, Ordering::Relaxed);
                running.total.store(total, Ordering::Relaxed);
                !running.cancel.load(Ordering::Relaxed)
            };
            let outcome = diff_users_told(&current, &next, &service, SAMPLES, &go_on).await;
            let ended = match outcome {
                Ok(Some(report)) => Ended::Done(report),
                Ok(None) => Ended::Cancelled,
                Err(err) => Ended::Failed(err.to_string()),
            };
            tracing::info!(
                job = running.id,
                target_name = %running.target,
                scanned = running.scanned.load(Ordering::Relaxed),
                outcome = match &ended {
                    Ended::Done(_) => "done",
                    Ended::Failed(_) => "failed",
                    Ended::Cancelled => "cancelled",
                },
                "console: mapping diff ended"
            );
            *running.ended() = Some((unix_millis(clock.as_ref()), ended));
        });
        job
    }

    /// Asks a running job to stop; false when it had already ended.
    pub(super) fn cancel(&self, job: &DiffJob) -> bool {
        if !job.running() {
            return false;
        }
        job.cancel.store(true, Ordering::Relaxed);
        true
    }
}
