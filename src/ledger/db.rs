//! Connections to the SQLite file: one writer thread that group-commits concurrent writes,
//! and a small pool of read-only connections. SQLite calls never run on async executor threads.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, Semaphore};

use super::{migrations, resources::Store, LedgerError};

/// How many queued writes share one transaction at most. Large enough to amortise the
/// commit, small enough that one slow batch does not hold every caller back.
const MAX_BATCH: usize = 256;

/// Page cache of the writer, in KiB (SQLite's negative `cache_size`). The default 2 MiB
/// re-reads index pages for every batch; 16 MiB keeps the hot ones while a burst lasts and
/// stays well inside the memory budget.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// WAL pages after which the writer folds the log back itself (512 MiB): only a safety
/// net, should the checkpoint thread fall far behind. A checkpoint on the writer stops
/// every write until the file is synced, 50-100 ms on our test machine: at 64 MiB it made
/// the accept path's p99 80-100 ms against a p50 of 12 ms.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 128 * 1024;

/// WAL pages past which the checkpoint thread also restarts the log (256 MiB). Under a
/// steady stream of writes a PASSIVE checkpoint never catches up with the newest commit,
/// and the log only starts over once every page in it has been copied: without a restart
/// it grew by the size of every write. A restart holds the writer back while it syncs, so
/// it is kept rare: a burst of about 15,000 new users; steadier traffic leaves quiet moments
/// in which the log starts over on its own.
const WAL_RESTART_PAGES: i64 = 64 * 1024;

/// The least time between two background checkpoints while writes keep coming: each copies
/// every page written since the last one and syncs the file, so a pause lets a page changed
/// many times be copied once.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub path: PathBuf,
    pub readers: usize,
}

/// What the writer thread runs: the caller's closure inside a savepoint. It reports whether
/// the closure succeeded, and hands back how to answer the caller once the batch commits.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Answers the caller once the batch is committed (`None`) or failed to commit.
type Finish = Box<dyn FnOnce(Option<&LedgerError>) + Send>;

struct Completion {
    succeeded: bool,
    finish: Finish,
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    /// Held by whoever checkpoints. SQLite runs one checkpoint at a time and answers any
    /// other with "busy" at once, without waiting: the shutdown checkpoint, racing the
    /// background one, left the log unfolded.
    checkpointing: Arc<Mutex<()>>,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Db {
    /// Opens (creating if needed) the database, applies migrations and starts the writer.
    pub fn open(options: &DbOptions) -> Result<Db, LedgerError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut writer = Connection::open(&options.path)?;
        configure(&writer)?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        migrations::run(&mut writer)?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;

        // Checkpoints copy pages into the main file and sync it: done on the writer, they
        // stalled every write behind them (a sixth of the writer's time under load).
        let checkpointer = Connection::open(&options.path)?;
        configure(&checkpointer)?;
        let (commits, committed) = mpsc::sync_channel::<()>(1);
        let checkpointing = Arc::new(Mutex::new(()));
        let guard = Arc::clone(&checkpointing);
        let checkpoints = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, committed, &guard))
            .map_err(|e| LedgerError::Commit(format!("cannot start the checkpoint thread: {e}")))?;

        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || write_loop(writer, inbox, commits, checkpoints))
            .map_err(|e| LedgerError::Commit(format!("cannot start the writer thread: {e}")))?;

        let readers = options.readers.max(1);
        Ok(Db {
            jobs,
            readers: Arc::new(ReaderPool {
                path: options.path.clone(),
                idle: Mutex::new(Vec::with_capacity(readers)),
                permits: Arc::new(Semaphore::new(readers)),
            }),
            checkpointing,
        })
    }

    /// Runs `work` in the next write transaction. Its changes are committed (and only then
    /// is the result returned) or, if it returns an error, rolled back alone: other writes
    /// in the same batch are unaffected.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            let result = work(&Store::new(conn));
            Completion {
                succeeded: result.is_ok(),
                finish: Box::new(move |commit_error| {
                    let outcome = match (result, commit_error) {
                        (Ok(_), Some(err)) => Err(E::from(LedgerError::Commit(err.to_string()))),
                        (result, _) => result,
                    };
                    // The caller may have gone away (client disconnected); the write stands.
                    let _ = reply.send(outcome);
                }),
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| E::from(LedgerError::WriterGone))?;
        answer.await.map_err(|_| E::from(LedgerError::WriterGone))?
    }

    /// Folds the write-ahead log back into the database file, for a clean shutdown. Runs on
    /// a connection of its own: the writer keeps its transaction machinery to itself.
    pub async fn checkpoint(&self) -> Result<(), LedgerError> {
        let path = self.readers.path.clone();
        let checkpointing = Arc::clone(&self.checkpointing);
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path)?;
            configure(&conn)?;
            let _alone = checkpointing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match checkpoint(&conn, "TRUNCATE")? {
                0 => Ok(()),
                log_pages => Err(LedgerError::Commit(format!(
                    "the write-ahead log could not be folded back ({log_pages} pages left): \
                     another process is using the database"
                ))),
            }
        })
        .await
        .map_err(|_| LedgerError::WriterGone)?
    }

    /// Runs `work` on a read-only connection from the pool, off the async executor, in one
    /// read transaction: every statement of `work` sees the same snapshot.
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        let permit = Arc::clone(&pool.permits)
            .acquire_owned()
            .await
            .map_err(|_| E::from(LedgerError::WriterGone))?;
        tokio::task::spawn_blocking(move || {
            let conn = match pool.take() {
                Ok(conn) => conn,
                Err(err) => return Err(E::from(err)),
            };
            let result = in_snapshot(&conn, work);
            // A connection whose snapshot could not be released would serve stale reads.
            if conn.is_autocommit() {
                pool.put_back(conn);
            }
            // Freed here, not when the caller's task next runs: on a busy executor that
            // wait held the connection idle for longer than the read took (a 4-connection
            // pool then queued reads for 30-40 ms during a fan-out).
            drop(permit);
            result
        })
        .await
        .map_err(|_| E::from(LedgerError::WriterGone))?
    }
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, LedgerError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Ok(conn)
            }
        }
    }

    fn put_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
    }
}

fn configure(conn: &Connection) -> Result<(), LedgerError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // NORMAL in WAL mode loses no committed transaction on a process crash, only
    // possibly the last ones on power loss, and it is what makes group commit fast.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each write runs in a savepoint of the batch; SQLite journals the pages a savepoint
    // touches so it can roll back alone. In a temporary file (the default) that journal
    // more than doubled the bytes written per SCIM create.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Room for every statement the ledger prepares, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Runs one of the fixed transaction-control statements through the statement cache:
/// `execute_batch` would parse it again for every job of every batch.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `work` in one read transaction. Besides the consistent snapshot, the database and
/// WAL-index locks are then taken once per read instead of once per statement: those
/// `fcntl` calls were about 5% of a userName lookup's time.
fn in_snapshot<T, E>(
    conn: &Connection,
    work: impl FnOnce(&Store<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<LedgerError>,
{
    control(conn, "BEGIN").map_err(|err| E::from(err.into()))?;
    let result = work(&Store::new(conn));
    // A read transaction has nothing to keep: COMMIT only releases the snapshot.
    let ended = control(conn, "COMMIT");
    let result = result?;
    ended.map_err(|err| E::from(err.into()))?;
    Ok(result)
}

/// Ends a job's savepoint, keeping or undoing its changes.
fn close_savepoint(conn: &Connection, keep: bool) -> rusqlite::Result<()> {
    if !keep {
        control(conn, "ROLLBACK TO job")?;
    }
    control(conn, "RELEASE job")
}

fn write_loop(
    conn: Connection,
    inbox: mpsc::Receiver<Job>,
    commits: mpsc::SyncSender<()>,
    checkpoints: std::thread::JoinHandle<()>,
) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
        // Full means a checkpoint is already due: nothing to add.
        let _ = commits.try_send(());
    }
    // Stops the checkpoint thread and waits for it, so the final checkpoint below runs
    // alone: SQLite answers a second concurrent checkpoint with "busy" without waiting.
    drop(commits);
    if checkpoints.join().is_err() {
        tracing::warn!("the checkpoint thread panicked");
    }
    // Every Db handle is gone: leave the WAL folded into the main file.
    match checkpoint(&conn, "TRUNCATE") {
        Ok(0) => {}
        Ok(log_pages) => {
            tracing::warn!(
                log_pages,
                "the WAL could not be folded back: the database is in use"
            )
        }
        Err(err) => tracing::warn!(error = %err, "final WAL checkpoint failed"),
    }
}

/// Folds the log into the main file after commits, at most once per `CHECKPOINT_PAUSE`.
/// PASSIVE never waits for the writer or the readers; pages still in use wait for the next.
/// Past `WAL_RESTART_PAGES` a RESTART follows it, which holds the writer back while it
/// copies what was committed since the PASSIVE one and syncs the file (55-110 ms measured
/// here), so that the next write starts the log over.
fn checkpoint_loop(conn: Connection, committed: mpsc::Receiver<()>, checkpointing: &Mutex<()>) {
    while committed.recv().is_ok() {
        {
            let _alone = checkpointing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match checkpoint(&conn, "PASSIVE") {
                Ok(log_pages) if log_pages >= WAL_RESTART_PAGES => {
                    if let Err(err) = checkpoint(&conn, "RESTART") {
                        tracing::warn!(error = %err, "WAL restart failed");
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "background WAL checkpoint failed"),
            }
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// Runs a checkpoint; returns the pages left in the log (none after a TRUNCATE that could
/// run: one that met another checkpoint, or a reader it could not wait out, leaves them).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    // The mode is one of our own constants: PRAGMA takes no bound parameters.
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}

fn run_batch(conn: &Connection, batch: Vec<Job>) {
    let mut finishers = Vec::with_capacity(batch.len());
    let begin = control(conn, "BEGIN IMMEDIATE");
    if let Err(err) = begin {
        // Run nothing: dropping the jobs answers every caller that the writer failed.
        tracing::error!(error = %err, "cannot begin a write transaction");
        drop(batch);
        return;
    }
    for job in batch {
        if let Err(err) = control(conn, "SAVEPOINT job") {
            tracing::error!(error = %err, "cannot open a savepoint");
            continue;
        }
        // A panicking job must not take the writer (and every later write) down with it.
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok(completion) => {
                if let Err(err) = close_savepoint(conn, completion.succeeded) {
                    tracing::error!(error = %err, "cannot close a savepoint");
                }
                finishers.push(completion.finish);
            }
            Err(_) => {
                tracing::error!("a database write panicked; its changes were rolled back");
                if let Err(err) = close_savepoint(conn, false) {
                    tracing::error!(error = %err, "cannot roll back a savepoint");
                }
            }
        }
    }
    let commit_error = control(conn, "COMMIT")
        .err()
        .map(|err| LedgerError::Commit(err.to_string()));
    if let Some(err) = &commit_error {
        tracing::error!(error = %err, "batch commit failed");
        if let Err(rollback) = control(conn, "ROLLBACK") {
            tracing::error!(error = %rollback, "rollback after a failed commit failed");
        }
    }
    for finish in finishers {
        finish(commit_error.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Lookup, ResourceKind, ResourceRow};

    fn row(id: &str) -> ResourceRow {
        ResourceRow {
            id: id.into(),
            version: 1,
            created: "t".into(),
            last_modified: "t".into(),
            body: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn a_checkpoint_folds_the_whole_log_back_while_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let db = Db::open(&DbOptions {
            path: path.clone(),
            readers: 1,
        })
        .unwrap();
        let wal = dir.path().join("c.db-wal");
        for round in 0..20 {
            // Each commit wakes the checkpoint thread, so its checkpoints may meet ours.
            for n in 0..50 {
                let id = format!("id{round}-{n}");
                db.write(move |store| {
                    let lookup = Lookup {
                        name: id.clone(),
                        ..Lookup::default()
                    };
                    store.insert(ResourceKind::User, &row(&id), &lookup)
                })
                .await
                .unwrap();
            }
            db.checkpoint().await.unwrap();
            assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "round {round}");
        }
        let count = db
            .read(|store| store.count(ResourceKind::User))
            .await
            .unwrap();
        assert_eq!(count, 1000);
    }

    #[tokio::test]
    async fn concurrent_writes_commit_together_and_a_failure_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("g.db"),
            readers: 2,
        })
        .unwrap();
        let mut tasks = Vec::new();
        for n in 0..200 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |store| {
                    let lookup = Lookup {
                        name: format!("user{n}"),
                        ..Lookup::default()
                    };
                    store.insert(ResourceKind::User, &row(&format!("id{n}")), &lookup)?;
                    if n % 10 == 0 {
                        // Written, then refused: must leave no trace.
                        return Err(LedgerError::Commit("refused".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        let count = db
            .read(|store| store.count(ResourceKind::User))
            .await
            .unwrap();
        assert_eq!(count, 180);
        let gone: Option<ResourceRow> = db
            .read(|s| s.get(ResourceKind::User, "id10"))
            .await
            .unwrap();
        assert!(gone.is_none());
    }
}
