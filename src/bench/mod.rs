//! `scim-bridge bench`: a load generator that measures the bridge the way an operator would,
//! over loopback: SCIM creates, patches and lookups at a given concurrency, then the time
//! until every target holds every user. Every phase is bounded in count and in time.

mod stats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{Overrides, Settings};
use crate::ledger::{Db, DbOptions, Lookup, ResourceKind, ResourceRow};
pub(crate) use stats::PhaseReport;

const BENCH_TOKEN: &str = "bench-token";
const ADMIN_TOKEN: &str = "scim-bridge-admin-dev-token";
/// The per-target request rate the bench's own bridge is allowed: high enough that the
/// bridge, not a vendor's quota, sets the pace.
const UNPACED_RATE: &str = "100000";
/// One request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait for deliveries asks the ledger. A poll reads the counters the database
/// keeps (a few rows per target); when it counted the rows instead, every 50 ms took a sixth
/// of the bridge's CPU away from delivering. 200 ms bounds the error on the measured time at
/// 0.2 s, under 1% of a 20,000-user run.
const LEDGER_POLL: Duration = Duration::from_millis(200);
/// Users per seeding write. Each insert into a table with a foreign key opens a statement
/// journal whose release grows with the pages its write has already changed: 20,000 users
/// per write spent 85% of the seeding in that release, 1,000 make it negligible.
const SEED_BATCH: usize = 1_000;
/// How often the size of the database and its WAL is sampled for the peak: a stat of two
/// files, so it costs the bridge nothing; a peak shorter than this can be missed.
const DISK_SAMPLE: Duration = Duration::from_millis(200);
/// The calibration task: SHA-256 over a 1 MiB buffer this many times, chained so that no
/// round can be skipped. About a tenth of a second on the machine of BENCHMARKS.md.
const CALIBRATION_ROUNDS: usize = 64;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub users: usize,
    pub concurrency: usize,
    /// A running SCIM endpoint (`http://host:port/scim/v2`); without it the bench starts a
    /// bridge of its own with a temporary database.
    pub url: Option<String>,
    /// Bearer token for `url`; `Some("")` sends no `Authorization` header.
    pub token: Option<String>,
    /// Pause every target first: measures how fast changes are taken in while targets lag.
    pub pause_deliveries: bool,
    /// Users written straight into the database before the bridge starts (lookup at scale).
    pub seed: usize,
    pub skip_patch: bool,
    /// Skip creates and patches: only look seeded users up.
    pub lookups_only: bool,
    /// The longest one phase (or the wait for deliveries) may take; requests not started by
    /// then are not sent, and the report says how many.
    pub phase_limit: Duration,
    /// Deliveries in flight per target in the bridge the bench starts.
    pub target_concurrency: usize,
    /// Keep the shipped targets' request rates and concurrency, and the vendors' own rate
    /// limits in the emulators, instead of lifting them: how fast a real deployment goes.
    pub shipped_pace: bool,
    /// Milliseconds every emulator waits before each answer, as a real vendor's API does.
    pub emulator_latency_ms: u64,
    /// The emulators in a `scim-bridge sandbox` process of their own, the bridge started with
    /// `serve --no-sandbox`: the bridge's peak RSS is then the bridge alone.
    pub sandbox_process: bool,
}

/// What one target received while the bench ran (own bridge only).
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// Ledger rows in the delivered state at the end.
    pub delivered: u64,
    /// Ledger rows the target refused or that were dead-lettered: a run with any is not a
    /// clean measurement.
    pub failed: u64,
    /// HTTP requests the target's emulator received during the run (logins, look-ups,
    /// creates and updates), counted by the emulator itself.
    pub requests: u64,
    pub requests_per_second: f64,
    /// Accounts the emulator holds at the end.
    pub accounts: u64,
    /// With `--skip-patch`: requests the emulator received from the first create until every
    /// target held every user (logins included), per user created.
    pub requests_per_new_user: Option<f64>,
    /// With `--skip-patch`: the update round after that (one change per user), its requests
    /// (logins included) and those per change the target took in.
    pub update_requests: Option<u64>,
    pub requests_per_update: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub users: usize,
    pub concurrency: usize,
    pub seeded_users: usize,
    pub seed_seconds: Option<f64>,
    /// One-minute load average of the machine when the bench started and ended: other work
    /// on the machine skews every figure.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    /// Share of the machine's CPU time the hypervisor gave to other guests while the bench
    /// ran (`steal` in /proc/stat). On a shared virtual machine this, more than anything in
    /// the bridge, moves the figures from one run to the next.
    pub cpu_stolen_percent: Option<f64>,
    pub phases: Vec<PhaseReport>,
    /// Seconds from the first create until every target held every user (own bridge only).
    pub delivery_seconds: Option<f64>,
    pub users_delivered_per_second: Option<f64>,
    pub targets: Vec<TargetReport>,
    /// Whether the emulators ran in a process of their own (`--sandbox-process`).
    pub sandbox_process: bool,
    /// The high-water mark of the bridge's resident memory (`VmHWM`); it includes the
    /// emulators unless they ran in a process of their own.
    pub peak_rss_mib: Option<f64>,
    /// The same for the separate emulator process, with `--sandbox-process`.
    pub sandbox_peak_rss_mib: Option<f64>,
    /// CPU time (user and system, every thread) the bridge process used from its start until
    /// every target held every user; it includes the emulators unless they ran apart.
    pub bridge_cpu_seconds: Option<f64>,
    /// `bridge_cpu_seconds` per user of the run (`--users`): in the default run, what one
    /// user costs the bridge in all (its create, PATCH, lookup and deliveries). Two cores
    /// at 2,500 users/s leave 0.8 ms for everything on the machine.
    pub bridge_cpu_ms_per_user: Option<f64>,
    /// The same as `bridge_cpu_seconds` for the separate emulator process.
    pub sandbox_cpu_seconds: Option<f64>,
    /// CPU time the bench process itself, the load generator, used from the first create
    /// until every target held every user.
    pub load_generator_cpu_seconds: Option<f64>,
    /// The share of every core's time that something ran over the same span (this run or
    /// anything else on the machine; time stolen by the hypervisor left out).
    pub machine_busy_percent: Option<f64>,
    /// The cores the machine offers.
    pub cores: usize,
    /// The users per second this run's work allows with every core busy throughout: the
    /// users over the CPU time of the bridge, the emulators and the load generator, spread
    /// over `cores`. No scheduling beats it; only less work per user does. Runs with the
    /// PATCH phase skipped add an update round to that time, and have none.
    pub cpu_bound_users_per_second: Option<f64>,
    /// The database and its WAL at the end of the run, before any checkpoint.
    pub database_mib: Option<f64>,
    /// The largest the database and its WAL were together, sampled every 200 ms from the
    /// bridge's start to the end of the run.
    pub peak_disk_mib: Option<f64>,
    /// The database once the bridge is stopped and its WAL folded back and emptied.
    pub checkpointed_mib: Option<f64>,
    /// `peak_disk_mib / checkpointed_mib`: how much more disk the run needed than its data.
    pub peak_disk_ratio: Option<f64>,
    /// Milliseconds a fixed CPU task (SHA-256 over a fixed buffer) took at the start and at
    /// the end of the run: how fast the machine was, so runs from different hours compare.
    pub calibration_start_ms: f64,
    pub calibration_end_ms: Option<f64>,
    /// Own bridge only: the first SCIM write after the bridge started and the one after it,
    /// each sent alone (they are users 0 and 1; the create phase sends the rest).
    pub first_create_ms: Option<f64>,
    pub second_create_ms: Option<f64>,
}

impl BenchReport {
    pub(crate) fn text(&self) -> String {
        let mut out = format!(
            "users {}  concurrency {}  seeded {}",
            self.users, self.concurrency, self.seeded_users
        );
        if let Some(seconds) = self.seed_seconds {
            out.push_str(&format!(" (in {seconds:.1} s)"));
        }
        if let (Some(before), Some(after)) = (self.load_before, self.load_after) {
            out.push_str(&format!("  load {before:.2} -> {after:.2}"));
        }
        if let Some(stolen) = self.cpu_stolen_percent {
            out.push_str(&format!("  cpu stolen {stolen:.1}%"));
        }
        out.push_str(&format!(
            "\ncalibration {:.1} ms",
            self.calibration_start_ms
        ));
        if let Some(end) = self.calibration_end_ms {
            out.push_str(&format!(" at the start, {end:.1} ms at the end"));
        }
        out.push('\n');
        if let (Some(first), Some(second)) = (self.first_create_ms, self.second_create_ms) {
            out.push_str(&format!(
                "first create after start   {first:.2} ms alone (the next one {second:.2} ms)\n"
            ));
        }
        for phase in &self.phases {
            out.push_str(&phase.line());
            out.push('\n');
        }
        if let (Some(seconds), Some(rate)) =
            (self.delivery_seconds, self.users_delivered_per_second)
        {
            out.push_str(&format!(
                "all targets delivered      {seconds:.2} s ({rate:.0} users/s fully delivered)\n"
            ));
        }
        for target in &self.targets {
            out.push_str(&format!(
                "  {:<12} {:>8} delivered {:>4} failed {:>8} accounts {:>9} requests {:>8.0} req/s\n",
                target.target,
                target.delivered,
                target.failed,
                target.accounts,
                target.requests,
                target.requests_per_second
            ));
            if let Some(per_user) = target.requests_per_new_user {
                out.push_str(&format!(
                    "  {:<12} {per_user:>8.3} requests per new user\n",
                    ""
                ));
            }
            if let (Some(requests), Some(per_change)) =
                (target.update_requests, target.requests_per_update)
            {
                out.push_str(&format!(
                    "  {:<12} {per_change:>8.3} requests per delivered update ({requests} requests)\n",
                    ""
                ));
            }
        }
        if let Some(rss) = self.peak_rss_mib {
            let whose = if self.sandbox_process {
                "bridge alone"
            } else {
                "emulators included"
            };
            out.push_str(&format!(
                "bridge peak RSS            {rss:.1} MiB ({whose})\n"
            ));
        }
        if let Some(rss) = self.sandbox_peak_rss_mib {
            out.push_str(&format!("emulators peak RSS         {rss:.1} MiB\n"));
        }
        if let (Some(cpu), Some(per_user)) = (self.bridge_cpu_seconds, self.bridge_cpu_ms_per_user)
        {
            out.push_str(&format!(
                "bridge CPU                 {cpu:.1} s, {per_user:.2} ms per user\n"
            ));
        }
        if let Some(cpu) = self.sandbox_cpu_seconds {
            out.push_str(&format!("emulators CPU              {cpu:.1} s\n"));
        }
        if let Some(cpu) = self.load_generator_cpu_seconds {
            out.push_str(&format!("load generator CPU         {cpu:.1} s\n"));
        }
        if let Some(busy) = self.machine_busy_percent {
            out.push_str(&format!(
                "machine busy               {busy:.0}% of {} cores, first create to last delivery\n",
                self.cores
            ));
        }
        if let Some(rate) = self.cpu_bound_users_per_second {
            out.push_str(&format!(
                "CPU-bound rate             {rate:.0} users/s with every core busy throughout \
                 (the CPU above over {} cores)\n",
                self.cores
            ));
        }
        if let Some(db) = self.database_mib {
            out.push_str(&format!(
                "database size              {db:.1} MiB (WAL included)\n"
            ));
        }
        if let (Some(peak), Some(folded), Some(ratio)) = (
            self.peak_disk_mib,
            self.checkpointed_mib,
            self.peak_disk_ratio,
        ) {
            out.push_str(&format!(
                "peak disk                  {peak:.1} MiB, checkpointed {folded:.1} MiB ({ratio:.2}x)\n"
            ));
        }
        out
    }
}

/// A target of the bridge the bench starts, and where its emulator's control endpoint is.
struct TargetSite {
    name: String,
    origin: String,
}

/// The bridge under test, started as a child process so its memory is its own, and with
/// `--sandbox-process` the emulators' process.
struct Bridge {
    child: Child,
    sandbox: Option<Child>,
    base: String,
    dir: WorkDir,
    targets: Vec<TargetSite>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.sandbox.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The bench's own scratch directory (database, key, log), removed when the bench ends.
/// Written here rather than taken from `tempfile`, which would make a test-only crate a
/// run-time dependency of the server binary for these few lines.
struct WorkDir(std::path::PathBuf);

impl WorkDir {
    fn create() -> std::io::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!(
            "scim-bridge-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&path)?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Bridge {
    async fn start(options: &BenchOptions) -> anyhow::Result<(Bridge, Option<f64>)> {
        let dir = WorkDir::create()?;
        let db_path = dir.path().join("bench.db");
        let seed_seconds = if options.seed > 0 {
            let began = Instant::now();
            seed_users(&db_path, options.seed).await?;
            Some(began.elapsed().as_secs_f64())
        } else {
            None
        };
        // The child runs the embedded default config: its targets are the sandbox's.
        let settings = Settings::load(None, &Overrides::default())?;
        let targets = settings
            .target_names()
            .into_iter()
            .filter_map(|name| {
                let base = reqwest::Url::parse(&settings.targets.get(&name)?.base_url).ok()?;
                Some(TargetSite {
                    origin: base.origin().ascii_serialization(),
                    name,
                })
            })
            .collect::<Vec<_>>();
        let sandbox = if options.sandbox_process {
            Some(start_sandbox(&dir, &targets, options.shipped_pace).await?)
        } else {
            None
        };
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("bridge.log"))?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(&db_path)
            .env("SCIM_BRIDGE_TOKEN", BENCH_TOKEN)
            .env("SCIM_BRIDGE__SCIM__REQUESTS_PER_SECOND", "1000000")
            .env(
                "SCIM_BRIDGE__FANOUT__KEY_FILE",
                dir.path().join("secret.key"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if sandbox.is_some() {
            command.arg("--no-sandbox");
        }
        if !options.shipped_pace {
            command.env("SCIM_BRIDGE__SANDBOX__VENDOR_RATE_LIMITS", "false");
            for target in &targets {
                let key = format!("SCIM_BRIDGE__TARGETS__{}", target.name.to_ascii_uppercase());
                command
                    .env(format!("{key}__RATE_LIMIT_PER_SECOND"), UNPACED_RATE)
                    .env(
                        format!("{key}__CONCURRENCY"),
                        options.target_concurrency.to_string(),
                    );
            }
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                // Left running, the emulators would hold their ports and fail the next bench.
                if let Some(mut sandbox) = sandbox {
                    let _ = sandbox.kill();
                    let _ = sandbox.wait();
                }
                return Err(anyhow::Error::new(err).context("cannot start the bridge"));
            }
        };
        let mut bridge = Bridge {
            child,
            sandbox,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            targets,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(Some(status)) = bridge.child.try_wait() {
                anyhow::bail!("the bridge exited ({status}):\n{}", bridge.log_tail());
            }
            if client
                .get(format!("{}/healthz", bridge.base))
                .send()
                .await
                .is_ok()
            {
                return Ok((bridge, seed_seconds));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the bridge did not become healthy:\n{}", bridge.log_tail())
    }

    /// The end of the child's log, to explain a failed start.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The high-water mark of the bridge's resident memory. It includes the in-process
    /// sandbox emulators and the accounts they hold, unless they run apart.
    fn peak_rss_mib(&self) -> Option<f64> {
        peak_rss_mib(&self.child)
    }

    fn sandbox_peak_rss_mib(&self) -> Option<f64> {
        peak_rss_mib(self.sandbox.as_ref()?)
    }

    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&self.child)
    }

    fn sandbox_cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.sandbox.as_ref()?)
    }

    fn database_mib(&self) -> f64 {
        database_mib(self.dir.path())
    }

    /// Samples the database's size until the sampler is dropped or stopped.
    fn sample_disk(&self) -> DiskSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = self.dir.path().to_owned();
        let task = tokio::spawn(async move {
            let mut peak = 0.0_f64;
            let mut ticks = tokio::time::interval(DISK_SAMPLE);
            loop {
                peak = peak.max(database_mib(&dir));
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = ticks.tick() => {}
                }
            }
        });
        DiskSampler { stop, task }
    }

    /// Stops the bridge and folds its WAL back into the database file; returns the file's
    /// size then, the size of the data the run left.
    async fn stop_and_checkpoint(&mut self) -> anyhow::Result<f64> {
        // Killed: every commit is in the WAL, which the checkpoint below folds back.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let db = Db::open(&DbOptions {
            path: self.dir.path().join("bench.db"),
            readers: 1,
        })?;
        db.checkpoint().await?;
        drop(db);
        Ok(self.database_mib())
    }
}

/// The database of the bench's bridge and its WAL, in MiB.
fn database_mib(dir: &Path) -> f64 {
    ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .sum()
}

/// The largest size of the database seen so far; sampling ends when it is dropped.
struct DiskSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<f64>,
}

impl DiskSampler {
    async fn peak_mib(self) -> Option<f64> {
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

/// Times the fixed CPU task, off the runtime's threads, in milliseconds.
async fn calibrate() -> anyhow::Result<f64> {
    use sha2::{Digest, Sha256};
    let millis = tokio::task::spawn_blocking(|| {
        let buffer = vec![0x5a_u8; 1 << 20];
        let began = Instant::now();
        let mut digest = [0_u8; 32];
        for _ in 0..CALIBRATION_ROUNDS {
            let mut hasher = Sha256::new();
            hasher.update(digest);
            hasher.update(&buffer);
            digest = hasher.finalize().into();
        }
        std::hint::black_box(digest);
        began.elapsed().as_secs_f64() * 1000.0
    })
    .await?;
    Ok(millis)
}

/// Starts `scim-bridge sandbox` and waits until it says it is running and every target's
/// emulator answers. Its own word is awaited because the ports are fixed: emulators another
/// process left on them would answer too, while this one failed to bind and exited.
async fn start_sandbox(
    dir: &WorkDir,
    targets: &[TargetSite],
    shipped_pace: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.path().join("sandbox.log"))?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("sandbox");
    if !shipped_pace {
        command.arg("--no-vendor-rate-limits");
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start the sandbox process")?;
    let (running, said_running) = tokio::sync::oneshot::channel();
    if let Some(stdout) = child.stdout.take() {
        // Reads to the end, so the child never writes into a closed pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut running = Some(running);
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(line) if line.starts_with("sandbox running") => {
                        if let Some(running) = running.take() {
                            let _ = running.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
    }
    let bound = tokio::time::timeout(Duration::from_secs(10), said_running).await;
    if !matches!(bound, Ok(Ok(()))) {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.path().join("sandbox.log")).unwrap_or_default();
        anyhow::bail!("the sandbox did not start (are its ports 18441-18444 taken?):\n{log}");
    }
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("sandbox.log")).unwrap_or_default();
            anyhow::bail!("the sandbox exited ({status}):\n{log}");
        }
        if emulator_stats(&client, targets).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    anyhow::bail!("the sandbox's emulators did not answer within 10 s")
}

/// A process's high-water mark of resident memory (`VmHWM`), in MiB.
fn peak_rss_mib(child: &Child) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The CPU time a process has used, user and system, all its threads, in seconds.
fn cpu_seconds(child: &Child) -> Option<f64> {
    cpu_seconds_in(&format!("/proc/{}/stat", child.id()))
}

/// The CPU time this process (the load generator) has used so far, in seconds.
fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_in("/proc/self/stat")
}

fn cpu_seconds_in(stat_file: &str) -> Option<f64> {
    /// /proc counts CPU time in USER_HZ ticks, 100 a second on Linux.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(stat_file).ok()?;
    Some(cpu_ticks_of(&stat)? as f64 / TICKS_PER_SECOND)
}

/// utime + stime from a `/proc/PID/stat` line. The command's name (the second field) may
/// hold spaces and parentheses: the fields are counted from the last ')'. After it come
/// state, ppid, ..., and utime and stime, the 12th and 13th.
fn cpu_ticks_of(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The machine's CPU time so far, in clock ticks, where the machine tells it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MachineTicks {
    total: u64,
    /// Idle, and waiting for I/O with nothing else to run.
    idle: u64,
    /// Given by the hypervisor to other guests.
    stolen: u64,
}

fn cpu_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu  user nice system idle iowait irq softirq steal ...
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(MachineTicks {
        total: fields.iter().sum(),
        idle: fields.get(3)? + fields.get(4)?,
        stolen: *fields.get(7)?,
    })
}

/// The share of the machine's time between two readings that `part` picks out.
fn share_percent(
    before: Option<MachineTicks>,
    after: Option<MachineTicks>,
    part: fn(&MachineTicks) -> u64,
) -> Option<f64> {
    let (before, after) = (before?, after?);
    let total = after.total.checked_sub(before.total).filter(|t| *t > 0)?;
    Some(100.0 * part(&after).saturating_sub(part(&before)) as f64 / total as f64)
}

fn stolen_percent(before: Option<MachineTicks>, after: Option<MachineTicks>) -> Option<f64> {
    share_percent(before, after, |ticks| ticks.stolen)
}

/// Every core's time that was not idle (nor stolen: another guest's work is not this run's).
fn busy_percent(before: Option<MachineTicks>, after: Option<MachineTicks>) -> Option<f64> {
    share_percent(before, after, |ticks| {
        ticks.total.saturating_sub(ticks.idle + ticks.stolen)
    })
}

/// The users per second a run's CPU time allows when every core is busy from the first
/// create to the last delivery: what no scheduling can beat, only less work.
fn cpu_bound_rate(users: usize, cpu_seconds: f64, cores: usize) -> Option<f64> {
    (cpu_seconds > 0.0 && cores > 0).then(|| users as f64 * cores as f64 / cpu_seconds)
}

/// The one-minute load average, where the machine tells it.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes `count` users straight into a fresh database, many to a transaction.
pub async fn seed_users(path: &Path, count: usize) -> anyhow::Result<()> {
    let db = Db::open(&DbOptions {
        path: PathBuf::from(path),
        readers: 1,
    })?;
    // Time-ordered ids, as the bridge assigns them.
    let ids: Arc<Vec<String>> = Arc::new(
        (0..count)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect(),
    );
    for start in (0..count).step_by(SEED_BATCH) {
        let end = (start + SEED_BATCH).min(count);
        let ids = Arc::clone(&ids);
        db.write(move |store| {
            for n in start..end {
                let name = format!("seed{n:07}@example.com");
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name,
                    "name": {"givenName": "Seed", "familyName": format!("User{n}")},
                    "emails": [{"value": name, "type": "work", "primary": true}],
                    "active": true
                });
                let row = ResourceRow {
                    id: ids[n].clone(),
                    version: 1,
                    created: "2026-01-01T00:00:00Z".into(),
                    last_modified: "2026-01-01T00:00:00Z".into(),
                    body: body.as_object().cloned().unwrap_or_default(),
                };
                let lookup = Lookup {
                    name: name.clone(),
                    external_id: None,
                    emails: vec![name],
                };
                store.insert(ResourceKind::User, &row, &lookup)?;
            }
            Ok::<_, crate::ledger::LedgerError>(())
        })
        .await?;
    }
    // Folded into the main file, as after a restart: left in a large WAL, the seeded pages
    // would cost every lookup a search of its index (1M lookups ran 20% slower that way).
    db.checkpoint().await?;
    Ok(())
}

fn bench_user(n: usize) -> Value {
    let name = format!("bench{n:07}@example.com");
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": format!("ext-{n}"),
        "name": {"givenName": "Bench", "familyName": format!("User{n}")},
        "displayName": format!("Bench User {n}"),
        "emails": [{"value": name, "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 415 555 0100", "type": "mobile"}],
        "active": true
    })
}

/// Runs up to `count` requests at `concurrency`, none started after `limit`; returns the
/// report and each started request's answer, in request order.
///
/// Each of the `concurrency` workers is a task of its own, so the requests are polled on the
/// same runtime threads as their connections: a single polling task woke another thread for
/// every request and doubled the load generator's CPU per request.
async fn phase<T, F, Fut>(
    name: &str,
    count: usize,
    concurrency: usize,
    limit: Duration,
    request: F,
) -> (PhaseReport, Vec<Option<T>>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + limit;
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let workers: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let (next, request) = (Arc::clone(&next), Arc::clone(&request));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                // The deadline is checked before taking a number, so the requests sent are
                // always 0..k: every number taken is sent.
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let began = Instant::now();
                    let answer = request(n).await;
                    answers.push((n, began.elapsed(), answer));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for worker in workers {
        match worker.await {
            Ok(part) => answers.extend(part),
            Err(err) => eprintln!("{name}: a load worker failed: {err}"),
        }
    }
    let elapsed = started.elapsed();
    let not_sent = count - answers.len();
    if not_sent > 0 {
        eprintln!("{name}: {not_sent} requests not sent: the phase reached its {limit:?} limit");
    }
    let mut latencies = Vec::with_capacity(answers.len());
    let mut errors = 0;
    // Placed by request number, so a caller's index always names the request it sent, even
    // if a failed worker took some answers with it.
    let sent = answers.iter().map(|(n, _, _)| n + 1).max().unwrap_or(0);
    let mut values: Vec<Option<T>> = (0..sent).map(|_| None).collect();
    for (n, latency, answer) in answers {
        match answer {
            Ok(value) => {
                latencies.push(latency);
                values[n] = Some(value);
            }
            Err(err) => {
                if errors == 0 {
                    eprintln!("{name}: first error: {err}");
                }
                errors += 1;
            }
        }
    }
    let report = PhaseReport::new(name, latencies, errors, not_sent, elapsed);
    (report, values)
}

/// Sends `request` and decodes only the part of the answer the caller needs (`T`); an empty
/// body reads as JSON `null`.
async fn send<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    expect: u16,
) -> Result<T, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != expect {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let json: &[u8] = if body.is_empty() { b"null" } else { &body };
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// The one field the bench needs from a created resource.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// The one field the bench needs from a list response.
#[derive(Deserialize)]
struct Found {
    #[serde(rename = "totalResults")]
    total_results: u64,
}

/// Adds the bearer token, unless the endpoint takes none.
fn authorized(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    if token.is_empty() {
        request
    } else {
        request.bearer_auth(token)
    }
}

/// A SCIM PATCH of user `id` replacing one attribute.
fn replace_one(
    client: &reqwest::Client,
    scim: &str,
    token: &str,
    id: &str,
    path: &str,
    value: String,
) -> reqwest::RequestBuilder {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": path, "value": value}]
    });
    let request = client
        .patch(format!("{scim}/Users/{id}"))
        .header("Content-Type", "application/scim+json")
        .body(body.to_string());
    authorized(request, token)
}

pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        !options.lookups_only || options.seed > 0,
        "--lookups-only looks up seeded users: give --seed N"
    );
    let load_before = load_average();
    let ticks_before = cpu_ticks();
    let calibration_start_ms = calibrate().await?;
    let (mut bridge, seed_seconds) = match &options.url {
        Some(_) => (None, None),
        None => {
            let (bridge, seconds) = Bridge::start(&options).await?;
            (Some(bridge), seconds)
        }
    };
    let scim = match (&options.url, &bridge) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(bridge)) => format!("{}/scim/v2", bridge.base),
        (None, None) => anyhow::bail!("no bridge to measure"),
    };
    let token = options
        .token
        .clone()
        .unwrap_or_else(|| BENCH_TOKEN.to_owned());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let admin = bridge.as_ref().map(|b| format!("{}/admin", b.base));
    if let (Some(admin), Some(bridge), true) = (&admin, &bridge, options.pause_deliveries) {
        for target in &bridge.targets {
            send::<IgnoredAny>(
                client
                    .post(format!("{admin}/targets/{}/pause", target.name))
                    .bearer_auth(ADMIN_TOKEN),
                200,
            )
            .await
            .map_err(anyhow::Error::msg)?;
        }
    }
    if let (Some(bridge), true) = (&bridge, options.emulator_latency_ms > 0) {
        let faults = json!({ "latency_ms": options.emulator_latency_ms });
        for target in &bridge.targets {
            send::<IgnoredAny>(
                client
                    .put(format!("{}/_sandbox/faults", target.origin))
                    .json(&faults),
                200,
            )
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the {} emulator's latency", target.name))?;
        }
    }
    let requests_before = match &bridge {
        Some(bridge) => emulator_stats(&client, &bridge.targets).await?,
        None => Vec::new(),
    };
    let disk = bridge.as_ref().map(Bridge::sample_disk);

    let users = options.users;
    let concurrency = options.concurrency;
    let limit = options.phase_limit;
    let started = Instant::now();
    let machine_at_start = cpu_ticks();
    let own_cpu_at_start = own_cpu_seconds();
    let creates = if options.lookups_only { 0 } else { users };
    // The bench's own bridge has taken no SCIM write yet: its first two creates go alone and
    // are timed, so that a one-off cost of the first write (something loaded on first use)
    // shows as the difference between them.
    let alone = if bridge.is_some() && creates >= 2 {
        2
    } else {
        0
    };
    let mut first_creates_ms = Vec::with_capacity(alone);
    let mut ids = Vec::with_capacity(creates);
    for n in 0..alone {
        let request = client
            .post(format!("{scim}/Users"))
            .header("Content-Type", "application/scim+json")
            .body(bench_user(n).to_string());
        let began = Instant::now();
        let created = send::<Created>(authorized(request, &token), 201)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("create {n}, sent alone"))?;
        first_creates_ms.push(began.elapsed().as_secs_f64() * 1000.0);
        ids.push(Some(created.id));
    }
    let (create, created) = phase(
        "create (POST /Users)",
        creates - alone,
        concurrency,
        limit,
        {
            let (client, scim, token) = (client.clone(), scim.clone(), token.clone());
            move |n| {
                let request = client
                    .post(format!("{scim}/Users"))
                    .header("Content-Type", "application/scim+json")
                    .body(bench_user(n + alone).to_string());
                send::<Created>(authorized(request, &token), 201)
            }
        },
    )
    .await;
    ids.extend(created.into_iter().map(|created| created.map(|c| c.id)));
    let ids: Arc<Vec<Option<String>>> = Arc::new(ids);
    let mut phases = Vec::new();
    if !options.lookups_only {
        phases.push(create);
    }

    if !options.skip_patch && !options.lookups_only {
        let (patch, _) = phase("update (PATCH /Users/id)", ids.len(), concurrency, limit, {
            let (ids, client, scim, token) = (
                Arc::clone(&ids),
                client.clone(),
                scim.clone(),
                token.clone(),
            );
            move |n| {
                let request = ids.get(n).cloned().flatten().map(|id| {
                    replace_one(
                        &client,
                        &scim,
                        &token,
                        &id,
                        "displayName",
                        format!("Patched {n}"),
                    )
                });
                async move {
                    match request {
                        Some(request) => send::<IgnoredAny>(request, 200).await.map(drop),
                        None => Err("the create failed".to_owned()),
                    }
                }
            }
        })
        .await;
        phases.push(patch);
    }

    // With seeded users, look those up (the point of seeding); otherwise the ones created.
    // Only users whose create was answered with an id: a create that failed may or may not
    // have been stored.
    let stored: Vec<usize> = (0..ids.len()).filter(|n| ids[*n].is_some()).collect();
    let lookups = if options.seed > 0 {
        users
    } else {
        stored.len()
    };
    let seed = options.seed;
    let lookup_name = move |n: usize| {
        if seed > 0 {
            format!("seed{:07}@example.com", (n * 7919) % seed)
        } else {
            format!("bench{:07}@example.com", stored[n])
        }
    };
    let (lookup, found) = phase("lookup (filter userName)", lookups, concurrency, limit, {
        let (client, scim, token) = (client.clone(), scim.clone(), token.clone());
        move |n| {
            let filter = format!("userName eq \"{}\"", lookup_name(n));
            let request = client
                .get(format!("{scim}/Users"))
                .query(&[("filter", filter.as_str())]);
            send::<Found>(authorized(request, &token), 200)
        }
    })
    .await;
    let misses = found
        .iter()
        .filter(|found| found.as_ref().is_some_and(|f| f.total_results != 1))
        .count();
    anyhow::ensure!(misses == 0, "{misses} lookups did not find their user");
    phases.push(lookup);

    let mut report = BenchReport {
        users,
        concurrency,
        seeded_users: options.seed,
        seed_seconds,
        load_before,
        load_after: None,
        cpu_stolen_percent: None,
        phases,
        delivery_seconds: None,
        users_delivered_per_second: None,
        targets: Vec::new(),
        sandbox_process: options.sandbox_process,
        peak_rss_mib: None,
        sandbox_peak_rss_mib: None,
        bridge_cpu_seconds: None,
        bridge_cpu_ms_per_user: None,
        sandbox_cpu_seconds: None,
        load_generator_cpu_seconds: None,
        machine_busy_percent: None,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_bound_users_per_second: None,
        database_mib: None,
        peak_disk_mib: None,
        checkpointed_mib: None,
        peak_disk_ratio: None,
        calibration_start_ms,
        calibration_end_ms: None,
        first_create_ms: first_creates_ms.first().copied(),
        second_create_ms: first_creates_ms.get(1).copied(),
    };
    let mut phases_after = Vec::new();
    if let (Some(bridge), Some(admin)) = (&bridge, &admin) {
        let created = ids.iter().flatten().count() as u64;
        let delivered = if options.pause_deliveries || bridge.targets.is_empty() {
            ledger_delivered(&client, admin).await?
        } else {
            let delivered = wait_for_deliveries(&client, admin, created, limit).await?;
            let seconds = started.elapsed().as_secs_f64();
            report.machine_busy_percent = busy_percent(machine_at_start, cpu_ticks());
            report.load_generator_cpu_seconds = own_cpu_seconds()
                .zip(own_cpu_at_start)
                .map(|(now, then)| now - then);
            report.delivery_seconds = Some(seconds);
            report.users_delivered_per_second = Some(created as f64 / seconds);
            delivered
        };
        let requests_after = emulator_stats(&client, &bridge.targets).await?;
        let seconds = report.delivery_seconds.unwrap_or(0.0);
        // Only without the PATCH phase do the requests so far belong to the creates alone.
        let per_new_user = options.skip_patch && report.delivery_seconds.is_some() && created > 0;
        let updates = if per_new_user {
            let (update, changes) = update_round(&client, &scim, &token, &ids, &options).await;
            phases_after.push(update);
            wait_for_deliveries(&client, admin, created, limit).await?;
            let requests = emulator_stats(&client, &bridge.targets).await?;
            Some((changes, requests))
        } else {
            None
        };
        report.targets = bridge
            .targets
            .iter()
            .zip(requests_before.iter().zip(&requests_after))
            .enumerate()
            .map(|(n, (target, (before, after)))| {
                let requests = after.requests.saturating_sub(before.requests);
                let update_requests = updates
                    .as_ref()
                    .map(|(_, stats)| stats[n].requests.saturating_sub(after.requests));
                let requests_per_update = match (&updates, update_requests) {
                    (Some((changes, _)), Some(requests)) if *changes > 0 => {
                        Some(requests as f64 / *changes as f64)
                    }
                    _ => None,
                };
                let (delivered, failed) = delivered
                    .iter()
                    .find(|counts| counts.target == target.name)
                    .map_or((0, 0), |counts| (counts.delivered, counts.failed));
                TargetReport {
                    target: target.name.clone(),
                    delivered,
                    failed,
                    requests,
                    requests_per_second: if seconds > 0.0 {
                        requests as f64 / seconds
                    } else {
                        0.0
                    },
                    accounts: after.accounts,
                    requests_per_new_user: per_new_user.then(|| requests as f64 / created as f64),
                    update_requests,
                    requests_per_update,
                }
            })
            .collect();
        report.peak_rss_mib = bridge.peak_rss_mib();
        report.sandbox_peak_rss_mib = bridge.sandbox_peak_rss_mib();
        report.bridge_cpu_seconds = bridge.cpu_seconds();
        report.bridge_cpu_ms_per_user = report
            .bridge_cpu_seconds
            .filter(|_| options.users > 0)
            .map(|cpu| 1000.0 * cpu / options.users as f64);
        report.sandbox_cpu_seconds = bridge.sandbox_cpu_seconds();
        if !per_new_user {
            let machine_cpu = [
                report.bridge_cpu_seconds,
                report.sandbox_cpu_seconds,
                report.load_generator_cpu_seconds,
            ];
            // The emulators in-process count in the bridge's figure; apart, in their own.
            let all_known = report.bridge_cpu_seconds.is_some()
                && report.load_generator_cpu_seconds.is_some()
                && (report.sandbox_cpu_seconds.is_some() || !options.sandbox_process);
            if all_known {
                let cpu = machine_cpu.iter().flatten().sum();
                report.cpu_bound_users_per_second =
                    cpu_bound_rate(created as usize, cpu, report.cores);
            }
        }
        report.database_mib = Some(bridge.database_mib());
    }
    report.calibration_end_ms = Some(calibrate().await?);
    if let (Some(bridge), Some(disk)) = (bridge.as_mut(), disk) {
        let peak = disk.peak_mib().await;
        let folded = bridge.stop_and_checkpoint().await?;
        report.peak_disk_mib = peak;
        report.checkpointed_mib = Some(folded);
        report.peak_disk_ratio = peak.filter(|_| folded > 0.0).map(|peak| peak / folded);
    }
    report.phases.extend(phases_after);
    report.load_after = load_average();
    report.cpu_stolen_percent = stolen_percent(ticks_before, cpu_ticks());
    Ok(report)
}

/// Changes the given name of every user created (a field every shipped mapping sends), once
/// each target holds them all: one change per user and target. Returns the phase and how
/// many changes were answered 200, the only ones counted.
async fn update_round(
    client: &reqwest::Client,
    scim: &str,
    token: &str,
    ids: &Arc<Vec<Option<String>>>,
    options: &BenchOptions,
) -> (PhaseReport, u64) {
    let name = "update, delivered (PATCH givenName)";
    let (phase, answered) = phase(name, ids.len(), options.concurrency, options.phase_limit, {
        let (ids, client, scim, token) = (
            Arc::clone(ids),
            client.clone(),
            scim.to_owned(),
            token.to_owned(),
        );
        move |n| {
            let request = ids.get(n).cloned().flatten().map(|id| {
                replace_one(
                    &client,
                    &scim,
                    &token,
                    &id,
                    "name.givenName",
                    format!("Changed{n}"),
                )
            });
            async move {
                match request {
                    Some(request) => send::<IgnoredAny>(request, 200).await.map(drop),
                    None => Err("the create failed".to_owned()),
                }
            }
        }
    })
    .await;
    let changes = answered.iter().flatten().count() as u64;
    (phase, changes)
}

/// An emulator's own totals, from its control endpoint.
struct EmulatorStats {
    requests: u64,
    accounts: u64,
}

async fn emulator_stats(
    client: &reqwest::Client,
    targets: &[TargetSite],
) -> anyhow::Result<Vec<EmulatorStats>> {
    let mut all = Vec::with_capacity(targets.len());
    for target in targets {
        let body: Value = send(client.get(format!("{}/_sandbox/stats", target.origin)), 200)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the {} emulator's statistics", target.name))?;
        all.push(EmulatorStats {
            requests: body["requests"].as_u64().unwrap_or(0),
            accounts: body["accounts"].as_u64().unwrap_or(0),
        });
    }
    Ok(all)
}

/// Every target's ledger counts, from the admin API.
async fn ledger_lag(client: &reqwest::Client, admin: &str) -> anyhow::Result<Vec<Value>> {
    let body: Value = send(
        client
            .get(format!("{admin}/targets"))
            .bearer_auth(ADMIN_TOKEN),
        200,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(body["targets"].as_array().cloned().unwrap_or_default())
}

/// How one target's ledger rows ended.
struct Settled {
    target: String,
    delivered: u64,
    failed: u64,
}

fn delivered_counts(targets: &[Value]) -> Vec<Settled> {
    let count = |t: &Value, key: &str| t[key].as_u64().unwrap_or(0);
    targets
        .iter()
        .map(|t| Settled {
            target: t["target"].as_str().unwrap_or_default().to_owned(),
            delivered: count(t, "delivered"),
            failed: count(t, "rejected") + count(t, "dead"),
        })
        .collect()
}

async fn ledger_delivered(client: &reqwest::Client, admin: &str) -> anyhow::Result<Vec<Settled>> {
    Ok(delivered_counts(&ledger_lag(client, admin).await?))
}

/// Polls the admin API until no target has anything pending and each has settled every
/// created user; returns deliveries per target.
async fn wait_for_deliveries(
    client: &reqwest::Client,
    admin: &str,
    users: u64,
    limit: Duration,
) -> anyhow::Result<Vec<Settled>> {
    let deadline = Instant::now() + limit;
    loop {
        let targets = ledger_lag(client, admin).await?;
        let outstanding: u64 = targets
            .iter()
            .map(|t| t["pending"].as_u64().unwrap_or(0) + t["retrying"].as_u64().unwrap_or(0))
            .sum();
        let all_there = targets.iter().all(|t| {
            t["delivered"].as_u64().unwrap_or(0)
                + t["rejected"].as_u64().unwrap_or(0)
                + t["dead"].as_u64().unwrap_or(0)
                >= users
        });
        if outstanding == 0 && all_there {
            return Ok(delivered_counts(&targets));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "deliveries did not complete within {limit:?}: {outstanding} still outstanding"
        );
        tokio::time::sleep(LEDGER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(total: u64, idle: u64, stolen: u64) -> Option<MachineTicks> {
        Some(MachineTicks {
            total,
            idle,
            stolen,
        })
    }

    #[test]
    fn stolen_time_is_a_share_of_all_the_time_that_passed() {
        assert_eq!(
            stolen_percent(ticks(100, 50, 10), ticks(300, 90, 30)),
            Some(10.0)
        );
        assert_eq!(stolen_percent(ticks(100, 50, 10), ticks(100, 50, 10)), None);
        assert_eq!(stolen_percent(None, ticks(100, 50, 10)), None);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_stolen_time() {
        // 200 ticks passed: 40 idle, 20 stolen, 140 of work.
        assert_eq!(
            busy_percent(ticks(100, 50, 10), ticks(300, 90, 30)),
            Some(70.0)
        );
        assert_eq!(busy_percent(ticks(100, 50, 10), None), None);
    }

    #[test]
    fn the_cpu_bound_rate_spreads_the_runs_cpu_time_over_every_core() {
        // 20,000 users, 16 s of CPU on 2 cores: 8 s at best, 2,500 users/s.
        assert_eq!(cpu_bound_rate(20_000, 16.0, 2), Some(2_500.0));
        assert_eq!(cpu_bound_rate(20_000, 0.0, 2), None);
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (scim (bridge) x) S 1 4242 4242 0 -1 4194560 9000 0 3 0 \
                    1805 233 0 0 20 0 12 0 5000 900000000 20000 18446744073709551615";
        assert_eq!(cpu_ticks_of(stat), Some(2_038));
        assert_eq!(cpu_ticks_of("4242 (cut short) S 1"), None);
        // This very process: some CPU time, read from its own stat line.
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks_of(&own).is_some());
    }
}
