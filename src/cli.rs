//! The command line: `serve`, and the operator's and admin's tools.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use crate::admin::parse_states;
use crate::bench::{self, BenchOptions};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{LogFormat, Overrides, Settings, EMBEDDED_DEFAULT};
use crate::fanout::operator::{audit_query, Operator, ReplayRequest};
use crate::fanout::report;
use crate::ledger::{Actor, Db, DbOptions};
use crate::mapping;
use crate::reconcile::{
    self,
    run::{Progress, RunRequest, Signal},
};
use crate::sandbox::{self, SandboxConfig};
use crate::scim::auth::sha256;
use crate::startup::{Application, BuildOptions};
use crate::targets::config::build_targets;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "scim-bridge",
    version,
    about = "SCIM 2.0 provisioning bridge: identity providers push users and groups in, \
             the bridge delivers them to user APIs that do not speak SCIM."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge: the SCIM API at /scim/v2, the admin API at /admin, health checks at
    /// /healthz and /readyz, Prometheus metrics at /metrics.
    Serve(ServeArgs),
    /// Run only the emulators of the target APIs, on the ports the default config's
    /// targets point at, so a bridge started with `serve --no-sandbox` can be stopped or
    /// killed while the emulators keep their state.
    Sandbox(SandboxArgs),
    /// Bearer-token helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The sync ledger: what each target holds, what failed and why, replay. Works on the
    /// database of a running or a stopped bridge.
    Ledger(LedgerArgs),
    /// Mapping files: validate them, preview what a user becomes on each target, and see
    /// what a mapping change would do to every stored user before shipping it.
    #[command(subcommand)]
    Mappings(MappingsCommand),
    /// Read the targets back and compare each (user, target) three ways: desired, delivered
    /// and what the target holds. Reports missing, drifted, unlinked and orphan accounts;
    /// with --apply carries out each target's policy, leaving repairs as due deliveries
    /// for the bridge's workers. Works whether the bridge runs or not.
    Reconcile(ReconcileArgs),
    /// Provision one user now, showing per target the SCIM user, the rendered payload, the
    /// account found, the three-way diff, the request and the answer. The bridge's workers
    /// send it; --dry-run only shows what would be sent.
    Sync(SyncArgs),
    /// Load-test a bridge over loopback: creates, patches and lookups at a concurrency, then
    /// the time until every target holds every user. Starts its own bridge (temporary
    /// database, sandbox targets) unless --url is given.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Validate every mapping file; print every error with file, line and column. Exit
    /// status 1 when any file is invalid.
    Check {
        #[arg(long, default_value = "mappings")]
        dir: PathBuf,
    },
    /// Print, per target, the operation and the exact JSON body a SCIM user would become
    /// (secrets redacted), or why the target would not receive it.
    Preview {
        /// A SCIM user as JSON (as an identity provider would POST it).
        #[arg(long, value_name = "FILE.json")]
        user: PathBuf,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value = "mappings")]
        dir: PathBuf,
    },
    /// For every user in the store, what would change on each target if the mappings in
    /// DIR replaced the current ones.
    Diff {
        /// The proposed mappings.
        #[arg(long, value_name = "DIR")]
        against: PathBuf,
        /// The mappings in force.
        #[arg(long, default_value = "mappings")]
        dir: PathBuf,
        #[command(flatten)]
        source: ConfigSource,
        /// SQLite database file, overriding database.path.
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// List every changed user, not only the summary.
        #[arg(long)]
        verbose: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Users to create (then patch and look up).
    #[arg(long, short = 'n', default_value_t = 20_000)]
    pub users: usize,
    /// Requests in flight at once.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Measure a running SCIM endpoint instead, e.g. http://127.0.0.1:8080/scim/v2.
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token for --url; an empty one sends no Authorization header.
    #[arg(long)]
    pub token: Option<String>,
    /// Pause every target first, to measure the accept path alone.
    #[arg(long)]
    pub pause_deliveries: bool,
    /// Users written straight into the database before the bridge starts (lookup at scale).
    #[arg(long, default_value_t = 0)]
    pub seed: usize,
    /// Skip the PATCH phase.
    #[arg(long)]
    pub skip_patch: bool,
    /// With --seed: only look the seeded users up (N lookups), so the lookup runs against
    /// exactly the seeded count.
    #[arg(long, requires = "seed")]
    pub lookups_only: bool,
    /// The longest a phase (or the wait for deliveries) may take; requests not started by
    /// then are not sent and are reported.
    #[arg(long, default_value_t = 300)]
    pub phase_limit_secs: u64,
    /// Deliveries in flight per target in the bridge the bench starts.
    #[arg(long, default_value_t = 64)]
    pub target_concurrency: usize,
    /// Keep the shipped targets' rates and concurrency and the vendors' rate limits in the
    /// emulators (by default the bench lifts them so the bridge sets the pace).
    #[arg(long, conflicts_with = "target_concurrency")]
    pub shipped_pace: bool,
    /// Milliseconds every emulator waits before each answer, as a remote API would.
    #[arg(long, default_value_t = 0)]
    pub emulator_latency_ms: u64,
    /// Run the emulators as a separate `scim-bridge sandbox` process and the bridge as
    /// `serve --no-sandbox`, so the bridge's peak memory is its own; both are reported.
    #[arg(long, conflicts_with = "url")]
    pub sandbox_process: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// SQLite database file, overriding database.path.
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Queue depth, failures and lag per target.
    Status,
    /// Delivery state and attempt history of one user on every target.
    Show {
        /// The SCIM id of the user.
        user: String,
    },
    /// Deliveries in a state: failed (rejected and dead, the default), pending, retrying,
    /// rejected, dead or delivered.
    List {
        #[arg(long, default_value = "failed")]
        state: String,
        #[arg(long)]
        target: Option<String>,
    },
    /// Per target and field, how many users are sent without it because their value could
    /// not be mapped (an unreadable phone number, ...), with an example reason.
    Omissions,
    /// Make rejected and dead deliveries due again (of a user, of a target, or both).
    Replay {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Only dead letters, not rejections.
        #[arg(long)]
        dead_only: bool,
    },
    /// Stop delivering to a target until resumed (changes keep being recorded).
    Pause { target: String },
    /// Resume delivering to a paused target.
    Resume { target: String },
    /// The disables and deletes the deprovisioning guard holds on a target.
    Held {
        #[arg(long)]
        target: String,
    },
    /// Send what the guard holds on a target, each once, and start its window afresh. A
    /// running bridge sends them on its next poll.
    Release { target: String },
    /// Drop what the guard holds on a target unsent: those users stay deprovisioned in the
    /// ledger only, and a later re-activation reaches the target as an ordinary update.
    Discard { target: String },
    /// The audit trail of operator actions, newest first.
    Audit {
        /// Only this action: replay, pause, resume, release, discard or mapping_reload.
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Entries before this sequence number (to page back).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// SQLite database file, overriding database.path.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Carry out the policies (without it, only report).
    #[arg(long)]
    pub apply: bool,
    /// Print the run and every finding as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The user's SCIM id or userName.
    pub user: String,
    #[command(flatten)]
    pub source: ConfigSource,
    /// SQLite database file, overriding database.path.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Show what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigSource {
    /// Configuration file; without it the embedded default (config/bridge.toml) is used.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Address to listen on, overriding server.listen (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// SQLite database file, overriding database.path.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Log format, overriding server.log_format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// One more accepted bearer token, for scripts and tests.
    #[arg(
        long,
        env = "SCIM_BRIDGE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Do not start the built-in emulators (they run apart, under `scim-bridge sandbox`).
    #[arg(long)]
    pub no_sandbox: bool,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Answer past the vendors' documented request limits too (Primavera's 55/s), as
    /// `sandbox.vendor_rate_limits = false` does for the in-process emulators: for load
    /// tests of the bridge itself.
    #[arg(long)]
    pub no_vendor_rate_limits: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Read a token on standard input and print its SHA-256, for scim.clients[].token_sha256.
    Hash,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration (with environment overrides): its keys, and that every token
    /// source and target secret resolves and every mapping loads, as `serve` needs them.
    Check(ConfigSource),
    /// Print the embedded default configuration.
    Default,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Sandbox(args) => run_sandbox(args).await,
        Command::Token(TokenCommand::Hash) => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            let token = token.trim();
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", hex::encode(sha256(token)));
            Ok(())
        }
        Command::Config(ConfigCommand::Check(source)) => {
            let settings = Settings::load(source.config.as_deref(), &Overrides::default())?;
            crate::startup::check(&settings)?;
            println!("configuration is valid");
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{EMBEDDED_DEFAULT}");
            Ok(())
        }
        Command::Ledger(args) => ledger(args).await,
        Command::Mappings(command) => mappings(command).await,
        Command::Reconcile(args) => reconcile(args).await,
        Command::Sync(args) => sync(args).await,
        Command::Bench(args) => {
            let run = bench::run(BenchOptions {
                users: args.users,
                concurrency: args.concurrency,
                url: args.url,
                token: args.token,
                pause_deliveries: args.pause_deliveries,
                seed: args.seed,
                skip_patch: args.skip_patch,
                lookups_only: args.lookups_only,
                phase_limit: std::time::Duration::from_secs(args.phase_limit_secs),
                target_concurrency: args.target_concurrency,
                shipped_pace: args.shipped_pace,
                emulator_latency_ms: args.emulator_latency_ms,
                sandbox_process: args.sandbox_process,
            });
            // Interrupted, the run is dropped, and with it the bridge it started: left
            // running, that bridge would hold the sandbox ports and fail the next bench.
            let report = tokio::select! {
                report = run => report?,
                signal = interrupted() => {
                    signal?;
                    anyhow::bail!("interrupted; the bridge the bench started is stopped")
                }
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

async fn mappings(command: MappingsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let ok = match command {
        MappingsCommand::Check { dir } => mapping::commands::check(&dir, &mut out)?,
        MappingsCommand::Preview { user, target, dir } => {
            let text = std::fs::read_to_string(&user)
                .with_context(|| format!("cannot read {}", user.display()))?;
            let user: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", user.display()))?;
            mapping::commands::preview(&dir, &user, target.as_deref(), &mut out)?
        }
        MappingsCommand::Diff {
            against,
            dir,
            source,
            db,
            verbose,
        } => {
            let overrides = Overrides {
                db,
                ..Overrides::default()
            };
            let settings = Settings::load(source.config.as_deref(), &overrides)?;
            mapping::commands::diff(&dir, &against, &settings.database.path, verbose, &mut out)
                .await?
        }
    };
    // Problems were printed above, where the admin reads them.
    anyhow::ensure!(ok, "see the problems above");
    Ok(())
}

async fn run_sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Human);
    let config = if args.no_vendor_rate_limits {
        SandboxConfig::default().without_rate_limits()
    } else {
        SandboxConfig::default()
    };
    let sandbox = sandbox::start(config, Arc::new(SystemClock)).await?;
    for (vendor, emulator) in &sandbox.emulators {
        let name = vendor.kind;
        println!(
            "{name:<12} {}   (accounts: {}/_sandbox/accounts)",
            emulator.base_url(),
            emulator.origin()
        );
    }
    println!("sandbox running; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    sandbox.stop().await;
    Ok(())
}

async fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        db: args.db,
        ..Overrides::default()
    };
    let settings = Settings::load(args.source.config.as_deref(), &overrides)?;
    anyhow::ensure!(
        settings.database.path.exists(),
        "no database at {}: pass --db or --config",
        settings.database.path.display()
    );
    let db = Db::open(&DbOptions {
        path: settings.database.path.clone(),
        readers: 1,
    })?;
    let operator = Operator::new(db, Arc::new(SystemClock), settings.target_names());
    let print = |value: serde_json::Value, text: String| {
        if args.json {
            println!("{value:#}");
        } else {
            print!("{text}");
        }
    };
    match args.command {
        LedgerCommand::Status => {
            let lag = operator.lag().await?;
            let mut text = report::lag(&lag);
            let planning = operator.planning().await?;
            if planning > 0 {
                text.push_str(&format!(
                    "planning: {planning} users written in SCIM, not yet in these counts\n"
                ));
            }
            print(serde_json::to_value(&lag)?, text);
        }
        LedgerCommand::Show { user } => {
            let status = operator.user(&user).await?;
            print(serde_json::to_value(&status)?, report::user(&status));
        }
        LedgerCommand::List { state, target } => {
            let states = parse_states(Some(&state)).map_err(anyhow::Error::msg)?;
            let rows = operator.list(&states, target.as_deref()).await?;
            print(serde_json::to_value(&rows)?, report::deliveries(&rows));
        }
        LedgerCommand::Omissions => {
            let rows = operator.omissions().await?;
            print(serde_json::to_value(&rows)?, report::omissions(&rows));
        }
        LedgerCommand::Replay {
            user,
            target,
            dead_only,
        } => {
            anyhow::ensure!(
                user.is_some() || target.is_some(),
                "name --user, --target, or both"
            );
            let replayed = operator
                .replay(
                    ReplayRequest {
                        user_id: user,
                        target,
                        dead_only,
                    },
                    &Actor::cli(),
                )
                .await?;
            print(
                serde_json::json!({"replayed": replayed}),
                format!("{replayed} deliveries are due again\n"),
            );
        }
        LedgerCommand::Pause { target }
        | LedgerCommand::Resume { target }
        | LedgerCommand::Held { target }
        | LedgerCommand::Release { target }
        | LedgerCommand::Discard { target }
            if !operator.targets().contains(&target) =>
        {
            anyhow::bail!(
                "no target named {target}; configured: {}",
                operator.targets().join(", ")
            );
        }
        LedgerCommand::Pause { target } => {
            operator.set_paused(&target, true, &Actor::cli()).await?;
            print(
                serde_json::json!({"target": target, "paused": true}),
                format!("{target} paused\n"),
            );
        }
        LedgerCommand::Resume { target } => {
            operator.set_paused(&target, false, &Actor::cli()).await?;
            print(
                serde_json::json!({"target": target, "paused": false}),
                format!("{target} resumed\n"),
            );
        }
        LedgerCommand::Held { target } => {
            let held = operator.held(&target).await?;
            print(serde_json::to_value(&held)?, report::held(&held));
        }
        LedgerCommand::Release { target } => {
            let released = operator.release(&target, &Actor::cli()).await?;
            print(
                serde_json::json!({"target": target, "released": released}),
                format!("{released} held deprovisions of {target} released; they are sent once\n"),
            );
        }
        LedgerCommand::Discard { target } => {
            let discarded = operator.discard(&target, &Actor::cli()).await?;
            print(
                serde_json::json!({"target": target, "discarded": discarded}),
                format!(
                    "{discarded} held deprovisions of {target} discarded; they are never sent\n"
                ),
            );
        }
        LedgerCommand::Audit {
            action,
            target,
            before,
            limit,
        } => {
            let query = audit_query(action.as_deref(), target, before, limit)
                .map_err(anyhow::Error::msg)?;
            let entries = operator.audit(query).await?;
            print(serde_json::to_value(&entries)?, report::audit(&entries));
        }
    }
    Ok(())
}

/// Settings with `--db` applied, and the database they name, which must exist: these
/// commands work on a bridge's database, never on a new empty one.
fn open_database(source: &ConfigSource, db: Option<PathBuf>) -> anyhow::Result<(Settings, Db)> {
    let overrides = Overrides {
        db,
        ..Overrides::default()
    };
    let settings = Settings::load(source.config.as_deref(), &overrides)?;
    anyhow::ensure!(
        settings.database.path.exists(),
        "no database at {}: pass --db or --config",
        settings.database.path.display()
    );
    let db = Db::open(&DbOptions {
        path: settings.database.path.clone(),
        readers: 2,
    })?;
    Ok((settings, db))
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let (settings, db) = open_database(&args.source, args.db)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let targets = build_targets(&settings.targets, clock.clone())?;
    let reconciler = Arc::new(reconcile::reconciler(
        &settings,
        db.clone(),
        clock,
        &targets,
        None,
    ));
    let request = RunRequest {
        target: args.target,
        apply: args.apply,
        actor: Actor::cli(),
    };
    let run_id = reconciler.begin(&request).await?;
    let progress: Box<dyn Progress> = if std::io::stdout().is_terminal() && !args.json {
        Box::new(reconcile::report::Bars::new())
    } else {
        Box::new(reconcile::report::Lines::new())
    };
    // Ctrl-C stops the run where it is; it is recorded as cancelled.
    let cancel = {
        let reconciler = Arc::clone(&reconciler);
        tokio::spawn(async move {
            if interrupted().await.is_ok() {
                reconciler.signal(Signal::Cancel, &Actor::cli()).await;
            }
        })
    };
    let run = reconciler
        .execute(run_id, &request, progress.as_ref())
        .await;
    cancel.abort();
    let run = run?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write!(
            out,
            "{{\"run\": {}, \"findings\": [",
            serde_json::to_string(&run)?
        )?;
    } else {
        write!(out, "{}", reconcile::report::summary(&run))?;
    }
    // Page by page: a run may have found more than fits in memory at once.
    let mut after = 0;
    let mut first = true;
    loop {
        let page = db
            .read(move |s| s.reconcile_findings(run_id, None, after, 1000))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for finding in &page {
            if args.json {
                let comma = if first { "" } else { "," };
                write!(out, "{comma}\n  {}", serde_json::to_string(finding)?)?;
            } else {
                write!(out, "{}", reconcile::report::finding(finding))?;
            }
            first = false;
        }
    }
    if args.json {
        writeln!(out, "\n]}}")?;
    }
    anyhow::ensure!(
        run.status != "failed",
        "the run failed: {}",
        run.error.unwrap_or_default()
    );
    Ok(())
}

async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let (settings, db) = open_database(&args.source, args.db)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let targets = build_targets(&settings.targets, clock.clone())?;
    let reconciler = reconcile::reconciler(&settings, db, clock, &targets, None);
    let report = reconciler
        .sync(
            &args.user,
            args.target.as_deref(),
            args.dry_run,
            &Actor::cli(),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", reconcile::report::sync(&report));
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        db: args.db,
        log_format: args.log_format,
        no_sandbox: args.no_sandbox,
    };
    let settings = Settings::load(args.source.config.as_deref(), &overrides)?;
    telemetry::init(settings.server.log_format);
    let options = BuildOptions {
        extra_token: args.token,
        ..BuildOptions::default()
    };
    let app = Application::build(settings, options).await?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
