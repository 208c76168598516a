//! Connections to the SQLite file: one writer thread that group-commits concurrent writes,
//! and a small pool of read-only connections. SQLite calls never run on async executor threads.
//! Opening checks that the file can really be written; the writer keeps track of whether
//! writes are failing for want of space or storage, which readiness reports.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, DatabaseName, ErrorCode, OpenFlags};
use tokio::sync::{oneshot, Semaphore};

use super::{counts, migrations, resources::Store, sqlite, LedgerError};

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

/// The WAL pages past which the checkpoint thread also restarts the log: a quarter of the
/// database's pages, within these bounds (16 MiB to 256 MiB of 4 KiB pages). Under a steady stream of
/// writes a PASSIVE checkpoint never catches up with the newest commit, and the log only
/// starts over once every page in it has been copied: without a restart it grew by the size
/// of every write. A restart holds the writer back while it syncs (55-110 ms measured here),
/// so it is kept rare; tied to the database's size, the disk the log takes stays within
/// a fraction of the database besides, instead of a fixed 256 MiB that a 90 MB database
/// reached four times over. At half the database, the log still outgrew the threshold by
/// the writes made while the restart waited for a core and for readers: a 20,000-user
/// bench peaked at 2.07 times its checkpointed size; a quarter leaves that room.
const WAL_RESTART_MIN_PAGES: i64 = 4 * 1024;
const WAL_RESTART_MAX_PAGES: i64 = 64 * 1024;

/// The least time between two background checkpoints while writes keep coming and the log
/// is well below its restart threshold: each copies every page written since the last one
/// and syncs the file, so a pause lets a page changed many times be copied once.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(250);

/// Quiet time after which the checkpoint thread folds the whole log back and empties the
/// file (TRUNCATE): with no writer to hold back, the disk returns to the database's size.
const IDLE_BEFORE_TRUNCATE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub path: PathBuf,
    pub readers: usize,
}

/// Mode of the database file when the bridge creates it: it holds personal data and sealed
/// passwords. SQLite gives the `-wal` and `-shm` files the mode of the database file.
const FILE_MODE: u32 = 0o600;

/// What the writer thread runs: the caller's closure, inside a savepoint when it writes.
/// It reports whether the closure succeeded, and hands back how to answer the caller once
/// the batch commits. Given an error instead of a connection (no transaction could be
/// opened), it answers its caller with that error at once.
struct Job {
    /// Whether the closure may change anything: only then does it get a savepoint, so that
    /// its failure rolls back its own changes and no one else's. A read has none to undo.
    writes: bool,
    run: RunJob,
}

type RunJob = Box<dyn FnOnce(Result<&Store<'_>, &LedgerError>) -> Option<Completion> + Send>;

impl Job {
    /// The job running `work`, and where its answer arrives once its batch is committed.
    fn new<T, E, F>(work: F, how: Enqueue) -> (Job, oneshot::Receiver<Result<T, E>>)
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + std::error::Error + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, E>>();
        let Enqueue { writes, vouches } = how;
        let run = Box::new(move |store: Result<&Store<'_>, &LedgerError>| {
            let store = match store {
                Ok(store) => store,
                Err(refused) => {
                    let _ = reply.send(Err(E::from(again(refused))));
                    return None;
                }
            };
            let result = work(store);
            Some(Completion {
                succeeded: result.is_ok(),
                vouches,
                storage_failure: result
                    .as_ref()
                    .err()
                    .and_then(|err| storage_failure_in(err)),
                finish: Box::new(move |commit_error| {
                    let outcome = match (result, commit_error) {
                        (Ok(_), Some(err)) => Err(E::from(again(err))),
                        (result, _) => result,
                    };
                    // The caller may have gone away (client disconnected); the write stands.
                    let _ = reply.send(outcome);
                }),
            })
        });
        (Job { writes, run }, answer)
    }
}

/// How a job joins the writer's queue.
struct Enqueue {
    /// See `Job::writes`.
    writes: bool,
    /// See `Completion::vouches`.
    vouches: bool,
}

/// Answers the caller once the batch is committed (`None`) or failed to commit.
type Finish = Box<dyn FnOnce(Option<&LedgerError>) + Send>;

struct Completion {
    succeeded: bool,
    /// Whether committing it shows the storage takes writes again (see `write_behind`).
    vouches: bool,
    /// Set when the closure failed because the storage refused the write.
    storage_failure: Option<String>,
    finish: Finish,
}

/// Why writes are failing, shared by every handle: set when a write meets a full disk, an
/// I/O error or a read-only file, cleared when a write commits again.
type Health = Arc<Mutex<Option<String>>>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    /// Held by whoever checkpoints. SQLite runs one checkpoint at a time and answers any
    /// other with "busy" at once, without waiting: the shutdown checkpoint, racing the
    /// background one, left the log unfolded.
    checkpointing: Arc<Mutex<()>>,
    /// Held while the log is restarted or truncated; the writer waits for it between two
    /// transactions (see `checkpoint_loop`).
    restarting: Arc<Mutex<()>>,
    health: Health,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Db {
    /// Opens (creating if needed) the database, applies migrations and starts the writer.
    /// Refuses, saying why, a file the bridge could read but not write: permissions, a
    /// read-only filesystem, or another process holding the lock.
    pub fn open(options: &DbOptions) -> Result<Db, LedgerError> {
        let setup = sqlite::configure_process();
        if !(setup.allocator && setup.page_cache) {
            tracing::debug!(
                ?setup,
                "SQLite was initialised before the ledger: its defaults stay"
            );
        }
        prepare_file(&options.path)?;
        let path = options.path.display().to_string();
        let mut writer = open_writer(&options.path).map_err(|err| explain(err, &path))?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        // SQLite falls back to read-only when it cannot open the file for writing; the
        // bridge would then answer every write with an error.
        if writer.is_readonly(DatabaseName::Main)? {
            return Err(LedgerError::NotWritable {
                path,
                reason: "SQLite could only open it read-only".into(),
            });
        }
        migrations::run(&mut writer).map_err(|err| explain(err, &path))?;
        let writer = Writer::counting(writer)?;
        let log_limit = Arc::new(AtomicI64::new(log_file_kept(
            writer
                .conn
                .query_row("PRAGMA page_count", [], |row| row.get(0))?,
            writer
                .conn
                .query_row("PRAGMA page_size", [], |row| row.get(0))?,
        )));
        let wanted_limit = Arc::clone(&log_limit);

        // Checkpoints copy pages into the main file and sync it: done on the writer, they
        // stalled every write behind them (a sixth of the writer's time under load).
        let checkpointer = Connection::open(&options.path)?;
        configure(&checkpointer)?;
        let (commits, committed) = mpsc::sync_channel::<()>(1);
        let checkpointing = Arc::new(Mutex::new(()));
        let guard = Arc::clone(&checkpointing);
        let restarting = Arc::new(Mutex::new(()));
        let restart_gate = Arc::clone(&restarting);
        let background_gate = Arc::clone(&restarting);
        let checkpoints = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                let gates = Gates {
                    checkpointing: &guard,
                    restarting: &background_gate,
                    log_limit: &wanted_limit,
                };
                checkpoint_loop(checkpointer, committed, gates)
            })
            .map_err(|e| LedgerError::Commit(format!("cannot start the checkpoint thread: {e}")))?;

        let health = Health::default();
        let writer_health = Arc::clone(&health);
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let ends = Ends {
                    commits,
                    checkpoints,
                    restarting: restart_gate,
                    log_limit,
                };
                write_loop(writer, inbox, ends, &writer_health)
            })
            .map_err(|e| LedgerError::Commit(format!("cannot start the writer thread: {e}")))?;

        let readers = options.readers.max(1);
        let pool = ReaderPool {
            path: options.path.clone(),
            idle: Mutex::new(Vec::with_capacity(readers)),
            permits: Arc::new(Semaphore::new(readers)),
        };
        // Opened now, schema read, so that the first requests after a start do not pay
        // for opening them.
        for _ in 0..readers {
            let conn = pool.open()?;
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            pool.put_back(conn);
        }
        Ok(Db {
            jobs,
            readers: Arc::new(pool),
            checkpointing,
            restarting,
            health,
        })
    }

    /// Caps the database at about `bytes` (SQLite's `max_page_count`): past it, writes fail
    /// as on a full disk, and are answered and reported the same way.
    pub(crate) async fn limit_size(&self, bytes: u64) -> Result<(), LedgerError> {
        self.write(move |store| {
            let conn = store.conn();
            let page_size: u64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            let pages = (bytes / page_size.max(1)).max(1);
            // PRAGMA takes no bound parameters; the value is our own integer.
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok::<(), LedgerError>(())
        })
        .await
    }

    /// `Ok` when writes are going through. After a write failed for want of space or
    /// storage, tries a write of its own that needs room for a large SCIM write (64 KiB of
    /// new pages, then a commit), so that readiness comes back once space is freed even if
    /// nothing else writes, and not while only a sliver is left.
    pub(crate) async fn writable(&self) -> Result<(), LedgerError> {
        if self.failing().is_none() {
            return Ok(());
        }
        self.write(|store| {
            store.conn().execute_batch(
                "CREATE TABLE scim_bridge_write_probe (filler BLOB);
                 INSERT INTO scim_bridge_write_probe VALUES (zeroblob(65536));
                 DROP TABLE scim_bridge_write_probe;",
            )?;
            Ok::<(), LedgerError>(())
        })
        .await
    }

    /// Why writes are failing, if they are.
    fn failing(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Runs `work` in the next write transaction. Its changes are committed (and only then
    /// is the result returned) or, if it returns an error, rolled back alone: other writes
    /// in the same batch are unaffected.
    pub(crate) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + std::error::Error + Send + 'static,
    {
        self.enqueue(
            work,
            Enqueue {
                writes: true,
                vouches: true,
            },
        )
        .await
    }

    /// `write` for work done behind the SCIM writes (the planner's). Its failure for want
    /// of space is reported like any other, but its success does not make the bridge ready
    /// again: it may have freed the very pages it used, and says nothing of whether a SCIM
    /// write would fit.
    pub(crate) async fn write_behind<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + std::error::Error + Send + 'static,
    {
        self.enqueue(
            work,
            Enqueue {
                writes: true,
                vouches: false,
            },
        )
        .await
    }

    /// Runs a read on the writer's connection, between two writes, and answers once the
    /// batch it joined is committed: it sees every write answered before it was asked. For
    /// small reads of rows the writes have just touched (a worker's due list): their pages
    /// are in the writer's cache, while a pooled reader, whose cache the last commit
    /// emptied, reads each one back in from the file (BENCHMARKS.md, "The due list read
    /// where it was written"). `work` must not write; it runs without a savepoint.
    pub(crate) async fn read_on_writer<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + std::error::Error + Send + 'static,
    {
        self.enqueue(
            move |store: &Store<'_>| {
                let before = store.conn().total_changes();
                let result = work(store);
                debug_assert_eq!(
                    store.conn().total_changes(),
                    before,
                    "a read on the writer changed the database"
                );
                result
            },
            Enqueue {
                writes: false,
                vouches: false,
            },
        )
        .await
    }

    async fn enqueue<T, E, F>(&self, work: F, how: Enqueue) -> Result<T, E>
    where
        F: FnOnce(&Store<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<LedgerError> + std::error::Error + Send + 'static,
    {
        let (job, answer) = Job::new(work, how);
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
        let restarting = Arc::clone(&self.restarting);
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path)?;
            configure(&conn)?;
            let _alone = checkpointing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // A TRUNCATE needs the write lock as a RESTART does.
            let _writer_waits = restarting
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
            None => self.open(),
        }
    }

    fn open(&self) -> Result<Connection, LedgerError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
    }
}

/// Creates the directory (0700) and the file (0600) before SQLite does, so that neither is
/// ever readable by others, and finds out, in words an operator can act on, whether the file
/// can be written. Warns about an existing file that others may read.
fn prepare_file(path: &Path) -> Result<(), LedgerError> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| LedgerError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|err| LedgerError::NotWritable {
            path: shown.clone(),
            reason: why_not_writable(&err),
        })?;
    for (file, mode) in open_to_others(path) {
        tracing::warn!(
            file = %file.display(),
            mode = %format!("{mode:o}"),
            "the database file is readable by other users; it holds personal data and \
             sealed passwords: chmod 600 it"
        );
    }
    Ok(())
}

/// The database's files (main, WAL, shared memory) that others may read, with their mode.
fn open_to_others(path: &Path) -> Vec<(PathBuf, u32)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            let mode = std::fs::metadata(&file).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some((file, mode))
        })
        .collect()
}

/// The reason an operator needs, from the error of opening the file for writing.
fn why_not_writable(err: &std::io::Error) -> String {
    match err.kind() {
        ErrorKind::PermissionDenied => format!(
            "permission denied ({err}): the bridge's user may not write the file or create \
             files in its directory; check their owner and mode"
        ),
        ErrorKind::ReadOnlyFilesystem => {
            format!("it is on a read-only filesystem ({err}); mount it read-write or move it")
        }
        _ => err.to_string(),
    }
}

/// The writer's connection and its count of the rows it changes. The counter comes first
/// so that it is dropped, and its hook removed, before the connection closes.
struct Writer {
    counter: sqlite::RowCounter,
    conn: Connection,
}

/// The audit trail's guard (migration 9), set again on the writer as a TEMP trigger: SQLite
/// runs TEMP triggers when the main schema's are off.
const AUDIT_GUARD: &str = "CREATE TEMP TRIGGER audit_append_only BEFORE UPDATE ON main.audit \
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END";

impl Writer {
    /// Turns the main schema's triggers off on `conn`, a migrated writer connection, and
    /// counts the rows it changes instead: each counting trigger ran a program and an upsert
    /// of its own for every row (see `counts.rs`). The triggers stay on for every other
    /// connection, a tool's too.
    fn counting(conn: Connection) -> Result<Writer, LedgerError> {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
        conn.execute_batch(AUDIT_GUARD)?;
        let counter = sqlite::RowCounter::install(&conn)?;
        Ok(Writer { counter, conn })
    }
}

/// The writer's connection, configured and in WAL mode.
fn open_writer(path: &Path) -> Result<Connection, LedgerError> {
    let writer = Connection::open(path)?;
    configure(&writer)?;
    writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    writer.pragma_update(None, "journal_mode", "WAL")?;
    // Takes the write lock and lets it go: a lock held elsewhere shows here, at start,
    // rather than as failed writes later.
    writer.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
    Ok(writer)
}

/// Names the cause of an error met while opening, where SQLite's own words do not.
fn explain(err: LedgerError, path: &str) -> LedgerError {
    let code = match &err {
        LedgerError::Sqlite(sqlite) => sqlite.sqlite_error_code(),
        _ => None,
    };
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => LedgerError::Locked {
            path: path.to_owned(),
        },
        Some(ErrorCode::ReadOnly) => LedgerError::NotWritable {
            path: path.to_owned(),
            reason: err.to_string(),
        },
        _ => err,
    }
}

/// SQLite's answers for "the storage cannot take this write": a full disk (or the
/// configured size cap), an I/O error, a file that became read-only.
pub(super) fn is_storage_failure(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly)
    )
}

/// Looks through a caller's error and its causes for a storage failure of the ledger.
fn storage_failure_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(ledger) = current.downcast_ref::<LedgerError>() {
            if ledger.is_unavailable() {
                return Some(ledger.to_string());
            }
        }
        if let Some(sqlite) = current.downcast_ref::<rusqlite::Error>() {
            if is_storage_failure(sqlite) {
                return Some(sqlite.to_string());
            }
        }
        cause = current.source();
    }
    None
}

/// The same failure again, for each caller of a batch.
fn again(err: &LedgerError) -> LedgerError {
    match err {
        LedgerError::Unavailable(reason) => LedgerError::Unavailable(reason.clone()),
        other if other.is_unavailable() => LedgerError::Unavailable(other.to_string()),
        other => LedgerError::Commit(other.to_string()),
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

/// What ties the writer to the checkpoint thread.
struct Ends {
    /// Told after each commit.
    commits: mpsc::SyncSender<()>,
    /// Joined at the end, before the final checkpoint.
    checkpoints: std::thread::JoinHandle<()>,
    /// Held by the checkpoint thread while it restarts the log; the writer waits for it
    /// between transactions.
    restarting: Arc<Mutex<()>>,
    /// The log file's size to keep after a restart (`log_file_kept`), as the checkpoint
    /// thread last worked it out; the writer's `journal_size_limit` follows it.
    log_limit: Arc<AtomicI64>,
}

/// What the checkpoint thread shares with the writer and the other checkpoints.
struct Gates<'a> {
    /// Held by whoever checkpoints (see `Db::checkpointing`).
    checkpointing: &'a Mutex<()>,
    /// Held while the log restarts or is truncated; the writer waits for it.
    restarting: &'a Mutex<()>,
    /// See `Ends::log_limit`.
    log_limit: &'a AtomicI64,
}

fn write_loop(
    writer: Writer,
    inbox: mpsc::Receiver<Job>,
    ends: Ends,
    health: &Mutex<Option<String>>,
) {
    let Ends {
        commits,
        checkpoints,
        restarting,
        log_limit,
    } = ends;
    let mut kept = None;
    while let Ok(first) = inbox.recv() {
        drop(
            restarting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let wanted = log_limit.load(Ordering::Relaxed);
        if kept != Some(wanted) {
            match writer
                .conn
                .pragma_update(None, "journal_size_limit", wanted)
            {
                Ok(()) => kept = Some(wanted),
                Err(err) => tracing::warn!(error = %err, "cannot set the log file's limit"),
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&writer, batch, health);
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
    match checkpoint(&writer.conn, "TRUNCATE") {
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
/// Past `restart_threshold` a RESTART follows it, which holds the writer back while it
/// copies what was committed since the PASSIVE one and syncs the file, so that the next
/// write starts the log over. After `IDLE_BEFORE_TRUNCATE` without a commit, a TRUNCATE
/// empties the log file.
fn checkpoint_loop(conn: Connection, committed: mpsc::Receiver<()>, gates: Gates<'_>) {
    let Gates {
        checkpointing,
        restarting,
        log_limit,
    } = gates;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap_or(4096);
    let mut folded = true;
    loop {
        match committed.recv_timeout(IDLE_BEFORE_TRUNCATE) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if folded => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _alone = checkpointing
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match checkpoint(&conn, "TRUNCATE") {
                    Ok(0) => folded = true,
                    // A reader still on an old snapshot: the next quiet second tries again.
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "idle WAL truncate failed"),
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        folded = false;
        let mut near_restart = false;
        {
            let _alone = checkpointing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let passive = checkpoint(&conn, "PASSIVE").and_then(|log_pages| {
                let db_pages = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
                Ok((log_pages, db_pages))
            });
            if let Ok((_, db_pages)) = passive {
                log_limit.store(log_file_kept(db_pages, page_size), Ordering::Relaxed);
            }
            match passive {
                Ok((log_pages, db_pages)) if log_pages >= restart_threshold(db_pages) => {
                    // A RESTART needs the write lock, and SQLite's busy handler polls for
                    // it: against a writer that commits back to back it lost the race for
                    // up to half a second while the log grew past three times the database
                    // (BENCHMARKS.md, "the log restarted on time"). The writer now waits
                    // for it between two transactions.
                    let _writer_waits = restarting
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    if let Err(err) = checkpoint(&conn, "RESTART") {
                        tracing::warn!(error = %err, "WAL restart failed");
                    }
                }
                Ok((log_pages, db_pages)) => near_restart = nears_restart(log_pages, db_pages),
                Err(err) => tracing::warn!(error = %err, "background WAL checkpoint failed"),
            }
        }
        if !near_restart {
            std::thread::sleep(CHECKPOINT_PAUSE);
        }
    }
}

/// The log pages at which a background checkpoint restarts the log, for a database of
/// `db_pages`.
fn restart_threshold(db_pages: i64) -> i64 {
    (db_pages / 4).clamp(WAL_RESTART_MIN_PAGES, WAL_RESTART_MAX_PAGES)
}

/// How large (bytes) the log file may stay once the log starts over, for a database of
/// `db_pages` of `page_size` bytes: SQLite truncates it to this at the first commit after a
/// restart (the writer's `journal_size_limit`, which follows the database's size). The
/// restart threshold: under load the file keeps the size the log reaches before a restart,
/// and the next round of commits overwrites blocks it already has. Truncated to a fixed
/// 16 MiB, every round gave most of them back and had the filesystem allocate them again,
/// about a fifth of the writer's time in `ext4_da_write_begin` and the truncation (end to
/// end 8 % slower, BENCHMARKS.md, "The log file keeps its blocks"). Kept at its largest
/// instead, the file stayed at the overshoot of an early burst beside the grown database:
/// 2.6 times the checkpointed size on the accept path. A quiet second still empties it
/// (`IDLE_BEFORE_TRUNCATE`).
fn log_file_kept(db_pages: i64, page_size: i64) -> i64 {
    restart_threshold(db_pages) * page_size
}

/// Whether the log is past half the restart threshold after a PASSIVE checkpoint. Then the
/// next checkpoint runs at the next commit instead of after `CHECKPOINT_PAUSE`: during a fast
/// burst the log grew by up to 40 MiB in one pause, past the threshold before the thread
/// looked again, and peaked at up to three times the checkpointed database.
fn nears_restart(log_pages: i64, db_pages: i64) -> bool {
    log_pages >= restart_threshold(db_pages) / 2
}

/// Runs a checkpoint; returns the pages left in the log (none after a TRUNCATE that could
/// run: one that met another checkpoint, or a reader it could not wait out, leaves them).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    // The mode is one of our own constants: PRAGMA takes no bound parameters.
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}

/// Records what a batch showed about the storage: `Ok` when a write committed, `Err` with
/// the reason when the storage refused one. Called before the callers are answered, so a
/// caller that saw its write refused finds the bridge not ready.
fn record(health: &Mutex<Option<String>>, outcome: Result<(), String>) {
    let mut failing = health
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match (outcome, failing.is_some()) {
        (Ok(()), true) => {
            tracing::info!("database writes are going through again");
            *failing = None;
        }
        (Err(reason), false) => {
            tracing::error!(reason = %reason, "database writes are failing; not ready");
            *failing = Some(reason);
        }
        (Err(reason), true) => *failing = Some(reason),
        (Ok(()), false) => {}
    }
}

/// Runs one batch in one transaction.
fn run_batch(writer: &Writer, batch: Vec<Job>, health: &Mutex<Option<String>>) {
    let conn = &writer.conn;
    let store = Store::on_writer(conn, &writer.counter);
    // Per job: whether it succeeded in a way that vouches for the storage, and its answer.
    let mut finishers: Vec<(bool, Finish)> = Vec::with_capacity(batch.len());
    let mut storage_failure: Option<String> = None;
    let mut jobs = batch.into_iter();
    if let Err(err) = begin(conn) {
        if err.is_unavailable() {
            record(health, Err(err.to_string()));
        }
        refuse(&err, jobs);
        return;
    }
    while let Some(job) = jobs.next() {
        if conn.is_autocommit() {
            // On a full disk or an I/O error SQLite may roll back the whole transaction,
            // not only the failed statement: the writes before it in this batch are gone.
            let reason = storage_failure
                .clone()
                .unwrap_or_else(|| "the transaction was rolled back".to_owned());
            tracing::error!(reason = %reason, lost = finishers.len(), "SQLite rolled back a write batch");
            record(health, Err(reason.clone()));
            let lost = LedgerError::Unavailable(reason);
            for (_, finish) in finishers.drain(..) {
                finish(Some(&lost));
            }
            // Their rows are gone, and so is what they changed in the counts.
            writer.counter.take_batch();
            if let Err(err) = begin(conn) {
                refuse(&err, std::iter::once(job).chain(jobs));
                return;
            }
        }
        let Job { writes, run } = job;
        if writes {
            if let Err(err) = control(conn, "SAVEPOINT job") {
                tracing::error!(error = %err, "cannot open a savepoint");
                run(Err(&LedgerError::from(err)));
                continue;
            }
        }
        // A panicking job must not take the writer (and every later write) down with it.
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(Ok(&store)))) {
            Ok(Some(completion)) => {
                if completion.storage_failure.is_some() {
                    storage_failure = completion.storage_failure;
                }
                // Undone below with its savepoint when it failed: its rows are not counted.
                if completion.succeeded {
                    writer.counter.keep_job();
                } else {
                    writer.counter.drop_job();
                }
                if writes && !conn.is_autocommit() {
                    if let Err(err) = close_savepoint(conn, completion.succeeded) {
                        tracing::error!(error = %err, "cannot close a savepoint");
                    }
                }
                finishers.push((
                    completion.succeeded && completion.vouches,
                    completion.finish,
                ));
            }
            Ok(None) => {}
            Err(_) if !writes => tracing::error!("a read on the writer panicked"),
            Err(_) => {
                tracing::error!("a database write panicked; its changes were rolled back");
                writer.counter.drop_job();
                if let Err(err) = close_savepoint(conn, false) {
                    tracing::error!(error = %err, "cannot roll back a savepoint");
                }
            }
        }
    }
    let commit_error = if conn.is_autocommit() {
        writer.counter.take_batch();
        Some(LedgerError::Unavailable(
            storage_failure
                .clone()
                .unwrap_or_else(|| "the transaction was rolled back".to_owned()),
        ))
    } else {
        counts::add_to_counters(conn, writer.counter.take_batch())
            .and_then(|()| control(conn, "COMMIT").map_err(LedgerError::from))
            .err()
    };
    if let Some(err) = &commit_error {
        tracing::error!(error = %err, "batch commit failed");
        if !conn.is_autocommit() {
            if let Err(rollback) = control(conn, "ROLLBACK") {
                tracing::error!(error = %rollback, "rollback after a failed commit failed");
            }
        }
    }
    let committed_any = commit_error.is_none() && finishers.iter().any(|(ok, _)| *ok);
    match (&commit_error, storage_failure) {
        (Some(err), _) if err.is_unavailable() => record(health, Err(err.to_string())),
        (_, Some(reason)) => record(health, Err(reason)),
        (None, None) if committed_any => record(health, Ok(())),
        _ => {}
    }
    for (_, finish) in finishers {
        finish(commit_error.as_ref());
    }
}

fn begin(conn: &Connection) -> Result<(), LedgerError> {
    control(conn, "BEGIN IMMEDIATE").map_err(|err| {
        tracing::error!(error = %err, "cannot begin a write transaction");
        LedgerError::from(err)
    })
}

/// Answers jobs that could not run with the reason.
fn refuse(err: &LedgerError, jobs: impl Iterator<Item = Job>) {
    for job in jobs {
        (job.run)(Err(err));
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

    #[test]
    fn new_files_are_private_and_an_existing_readable_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("p.db");
        prepare_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        assert!(open_to_others(&path).is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // What `prepare_file` warns about (asserted as a value: a log captured through a
        // thread-local subscriber is lost now and then when tests run in parallel).
        assert_eq!(open_to_others(&path), [(path.clone(), 0o644)]);
        prepare_file(&path).unwrap();
        // Reported, not changed: the operator decides.
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn reasons_for_an_unwritable_file_name_the_cause() {
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        assert!(why_not_writable(&denied).contains("owner and mode"));
        // EROFS: a read-only mount cannot be made in a test without privileges.
        let read_only = std::io::Error::from_raw_os_error(30);
        assert!(why_not_writable(&read_only).contains("read-only filesystem"));
    }

    /// The writer runs with the main schema's triggers off (`Writer::counting`), so each
    /// one needs its counterpart there. A new trigger fails this test until it has one.
    #[test]
    fn every_trigger_has_its_counterpart_on_the_writer() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::run(&mut conn).unwrap();
        let triggers = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        assert_eq!(
            triggers,
            [
                "audit_append_only",       // AUDIT_GUARD
                "delivery_counts_delete",  // the RowCounter
                "delivery_counts_insert",  // the RowCounter
                "delivery_counts_update",  // the RowCounter
                "plan_queue_count_delete", // the RowCounter
                "plan_queue_count_insert", // the RowCounter
            ]
        );
    }

    /// One batch as the writer runs it: two writes, a read that fails between them and a
    /// read after them, each answered after the commit.
    #[tokio::test]
    async fn a_read_on_the_writer_sees_the_writes_before_it_and_its_failure_undoes_none() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::run(&mut conn).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let writer = Writer::counting(conn).unwrap();
        let conn = &writer.conn;
        let insert = |x: i64| {
            let work = move |s: &Store<'_>| -> Result<usize, LedgerError> {
                Ok(s.conn().execute("INSERT INTO t VALUES (?1)", [x])?)
            };
            Job::new(
                work,
                Enqueue {
                    writes: true,
                    vouches: true,
                },
            )
        };
        let read = |sql: &'static str| {
            let work = move |s: &Store<'_>| -> Result<i64, LedgerError> {
                Ok(s.conn().query_row(sql, [], |row| row.get(0))?)
            };
            Job::new(
                work,
                Enqueue {
                    writes: false,
                    vouches: false,
                },
            )
        };
        let (first, first_answer) = insert(1);
        let (failing, failing_answer) = read("SELECT nothing FROM nowhere");
        let (second, second_answer) = insert(2);
        let (sum, sum_answer) = read("SELECT sum(x) FROM t");
        let health = Mutex::new(None);
        run_batch(&writer, vec![first, failing, second, sum], &health);

        assert_eq!(first_answer.await.unwrap().unwrap(), 1);
        assert!(failing_answer.await.unwrap().is_err());
        assert_eq!(second_answer.await.unwrap().unwrap(), 1);
        // Both writes, the one after the failed read too, were seen and committed.
        assert_eq!(sum_answer.await.unwrap().unwrap(), 3);
        assert!(conn.is_autocommit(), "the batch is committed");
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, 2);
        assert!(health.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_read_on_the_writer_answers_what_was_committed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("w.db"),
            readers: 1,
        })
        .unwrap();
        insert_filler(&db, 1).await.unwrap();
        let count = db
            .read_on_writer(|store| store.count(ResourceKind::User))
            .await
            .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn storage_failures_are_told_apart_from_other_errors() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        // query_only makes SQLite answer writes with SQLITE_READONLY, the code a file that
        // turned read-only under a running bridge gives.
        conn.pragma_update(None, "query_only", true).unwrap();
        let read_only = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(is_storage_failure(&read_only), "{read_only}");
        let wrong = conn.execute("INSERT INTO nope VALUES (1)", []).unwrap_err();
        assert!(!is_storage_failure(&wrong), "{wrong}");
        assert!(LedgerError::from(read_only).is_unavailable());
        assert!(!LedgerError::Commit("x".into()).is_unavailable());
    }

    async fn insert_filler(db: &Db, n: usize) -> Result<(), LedgerError> {
        db.write(move |store| {
            let id = format!("filler{n}");
            let lookup = Lookup {
                name: id.clone(),
                ..Lookup::default()
            };
            let mut filler = row(&id);
            filler
                .body
                .insert("pad".into(), serde_json::json!("x".repeat(2000)));
            store.insert(ResourceKind::User, &filler, &lookup)
        })
        .await
    }

    #[tokio::test]
    async fn a_full_database_is_unavailable_until_a_write_commits_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("f.db"),
            readers: 1,
        })
        .unwrap();
        db.limit_size(256 * 1024).await.unwrap();
        db.writable().await.unwrap();
        let mut n = 0;
        let err = loop {
            match insert_filler(&db, n).await {
                Ok(()) => n += 1,
                Err(err) => break err,
            }
            assert!(n < 1000, "the cap never took effect");
        };
        assert!(err.is_unavailable(), "{err}");
        // The probe needs a new page too, so it fails while nothing is freed.
        assert!(db.writable().await.unwrap_err().is_unavailable());

        db.limit_size(1024 * 1024).await.unwrap();
        db.writable().await.unwrap();
        assert!(db.failing().is_none());
        insert_filler(&db, n).await.unwrap();
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
    async fn a_write_waits_while_the_log_is_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("g.db"),
            readers: 1,
        })
        .unwrap();
        // The checkpoint thread's side of the gate, held on a thread of its own as it is.
        let (held, release) = (mpsc::channel(), mpsc::channel::<()>());
        let gate = Arc::clone(&db.restarting);
        let holder = std::thread::spawn(move || {
            let _restarting = gate.lock().unwrap();
            held.0.send(()).unwrap();
            release.1.recv().unwrap();
        });
        held.1.recv().unwrap();
        let writer = db.clone();
        let mut write = tokio::spawn(async move {
            writer
                .write(|store| {
                    let lookup = Lookup {
                        name: "gated".into(),
                        ..Lookup::default()
                    };
                    store.insert(ResourceKind::User, &row("gated"), &lookup)
                })
                .await
        });
        // A bounded look: the write has not gone through while the gate is held.
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut write).await;
        assert!(waited.is_err(), "the write went through during a restart");
        release.0.send(()).unwrap();
        holder.join().unwrap();
        write.await.unwrap().unwrap();
        let stored = db
            .read(|store| store.count(ResourceKind::User))
            .await
            .unwrap();
        assert_eq!(stored, 1);
    }

    #[tokio::test]
    async fn a_quiet_second_empties_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("q.db"),
            readers: 1,
        })
        .unwrap();
        for n in 0..20 {
            insert_filler(&db, n).await.unwrap();
        }
        let wal = dir.path().join("q.db-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        // The checkpoint thread works on its own clock; this only bounds the wait for it.
        let mut waited = Duration::ZERO;
        while std::fs::metadata(&wal).unwrap().len() > 0 {
            assert!(
                waited < Duration::from_secs(20),
                "the log was never emptied"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        let count = db
            .read(|store| store.count(ResourceKind::User))
            .await
            .unwrap();
        assert_eq!(count, 20);
    }

    #[tokio::test]
    async fn the_writer_limits_the_log_file_it_keeps_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("l.db"),
            readers: 1,
        })
        .unwrap();
        let limit: i64 = db
            .write(|store| {
                Ok::<_, LedgerError>(store.conn().query_row(
                    "PRAGMA journal_size_limit",
                    [],
                    |row| row.get(0),
                )?)
            })
            .await
            .unwrap();
        // A small database keeps 16 MiB of log file, the least restart threshold.
        assert_eq!(limit, 16 * 1024 * 1024);
    }

    #[test]
    fn the_log_file_kept_after_a_restart_follows_the_database() {
        assert_eq!(log_file_kept(1_000, 4096), 16 * 1024 * 1024);
        // 120 MiB of database: a quarter.
        assert_eq!(log_file_kept(30_720, 4096), 30 * 1024 * 1024);
        assert_eq!(log_file_kept(10_000_000, 4096), 256 * 1024 * 1024);
    }

    #[test]
    fn the_log_restarts_at_a_quarter_of_the_database_within_bounds() {
        for (db_pages, threshold) in [
            (0, WAL_RESTART_MIN_PAGES),
            (4 * WAL_RESTART_MIN_PAGES, WAL_RESTART_MIN_PAGES),
            (6 * WAL_RESTART_MIN_PAGES, 3 * WAL_RESTART_MIN_PAGES / 2),
            (46_000, 11_500),
            (4 * WAL_RESTART_MAX_PAGES, WAL_RESTART_MAX_PAGES),
            (1_000_000, WAL_RESTART_MAX_PAGES),
        ] {
            assert_eq!(restart_threshold(db_pages), threshold, "{db_pages} pages");
        }
    }

    #[test]
    fn the_checkpoint_thread_stops_pausing_once_the_log_is_half_way_to_a_restart() {
        let half = WAL_RESTART_MIN_PAGES / 2;
        for (log_pages, db_pages, near) in [
            (0, 0, false),
            (half - 1, 0, false),
            (half, 0, true),
            (half, 8 * WAL_RESTART_MIN_PAGES, false),
            (WAL_RESTART_MIN_PAGES, 8 * WAL_RESTART_MIN_PAGES, true),
            (WAL_RESTART_MAX_PAGES / 2, 1_000_000, true),
        ] {
            assert_eq!(
                nears_restart(log_pages, db_pages),
                near,
                "{log_pages} log pages, {db_pages} database pages"
            );
        }
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
