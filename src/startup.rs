//! The one place that wires every module together: database, sandbox, targets, mappings,
//! fan-out workers, services and the HTTP server.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use serde_json::json;
use tracing_actix_web::TracingLogger;

use crate::admin::{self, AdminAuth, Reloader};
use crate::clock::{unix_millis, SharedClock, SystemClock};
use crate::config::Settings;
use crate::console::{self, Console};
use crate::fanout::backoff::Backoff;
use crate::fanout::concurrency::ConcurrencyPolicy;
use crate::fanout::operator::Operator;
use crate::fanout::plan::{FanoutHook, Planner};
use crate::fanout::planner;
use crate::fanout::secrets::{SecretBox, KEY_ENV};
use crate::fanout::worker::{TargetPolicy, Worker};
use crate::fanout::Fanout;
use crate::ledger::{Actor, Db, DbOptions, LedgerError};
use crate::mapping::MappingSet;
use crate::metrics::{Metrics, ScrapeAccess};
use crate::reconcile::policy::Interval;
use crate::reconcile::policy::OnMissing;
use crate::reconcile::service::Reconciles;
use crate::reconcile::{self};
use crate::sandbox::{self, Sandbox, SandboxConfig};
use crate::scim::auth::{client_address, Authenticator, FailedAuthLimit, ScimAuth};
use crate::scim::routes::{self, ScimState};
use crate::scim::service::{ScimService, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::targets::config::{build_targets, FirstDelivery};
use crate::targets::{Target, TargetSchema};
use crate::telemetry::RedactedRootSpan;
use secrecy::ExposeSecret;

/// What the caller chooses beyond the settings.
#[derive(Clone)]
pub struct BuildOptions {
    pub clock: SharedClock,
    /// One more accepted bearer token (`SCIM_BRIDGE_TOKEN`).
    pub extra_token: Option<String>,
    /// Key for passwords at rest; `None` reads `SCIM_BRIDGE_SECRET_KEY` or the key file.
    pub secret_key: Option<[u8; 32]>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            clock: Arc::new(SystemClock),
            extra_token: None,
            secret_key: None,
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
    planning: planner::Planning,
    fanout: Arc<Fanout>,
    sandbox: Option<Sandbox>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Opens the database, starts the sandbox (if configured) and the fan-out workers, and
    /// binds the listener (port 0 picks a free port). Needs a running tokio runtime.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Application> {
        let clock = options.clock.clone();
        let db = Db::open(&DbOptions {
            path: settings.database.path.clone(),
            readers: settings.database.readers,
        })
        .with_context(|| format!("database {}", settings.database.path.display()))?;
        if let Some(megabytes) = settings.database.max_size_mb {
            db.limit_size(megabytes * 1024 * 1024)
                .await
                .context("cannot cap the database size")?;
        }

        let sandbox = if settings.sandbox.start {
            let sandbox_config = if settings.sandbox.vendor_rate_limits {
                SandboxConfig::default()
            } else {
                SandboxConfig::default().without_rate_limits()
            };
            let sandbox = sandbox::start(sandbox_config, clock.clone())
                .await
                .context(
                    "cannot start the sandbox emulators on ports 18441-18444 (is `scim-bridge \
                     sandbox` already running? then use `serve --no-sandbox`)",
                )?;
            let emulators: Vec<String> = sandbox
                .emulators
                .iter()
                .map(|(vendor, emulator)| format!("{}={}", vendor.kind, emulator.base_url()))
                .collect();
            tracing::warn!(
                emulators = %emulators.join(" "),
                "delivering to the built-in sandbox emulators, not to real target APIs"
            );
            Some(sandbox)
        } else {
            None
        };

        let targets = build_targets(&settings.targets, clock.clone())?;
        let mappings = load_mappings(&settings, &targets)?;
        // Loaded now rather than by the first SCIM write that renders a phone number.
        crate::mapping::warm_phone_metadata();
        let secrets = Arc::new(match options.secret_key {
            Some(key) => SecretBox::from_key(&key),
            None => SecretBox::load(
                std::env::var(KEY_ENV).ok().as_deref(),
                &settings.fanout.key_file,
            )?,
        });
        let metrics = Arc::new(Metrics::new());
        let fanout_settings = &settings.fanout;
        let workers = targets
            .iter()
            .map(|target| {
                let table = settings.targets.get(target.name());
                let concurrency = ConcurrencyPolicy {
                    initial: table.map_or(1, |t| t.concurrency),
                    max: table.map_or(1, |t| t.max_concurrency),
                    adaptive: table.is_some_and(|t| t.adaptive_concurrency),
                };
                let guard = table.map(|t| t.guard).unwrap_or_default();
                let first_delivery = table.map_or(FirstDelivery::FindFirst, |t| t.first_delivery);
                Worker::new(
                    Arc::clone(target),
                    db.clone(),
                    clock.clone(),
                    Arc::clone(&secrets),
                    Arc::clone(&metrics),
                    TargetPolicy {
                        concurrency,
                        first_delivery,
                        list_first: table.map(|t| t.list_first).unwrap_or_default(),
                        max_attempts: fanout_settings.max_attempts,
                        dead_letter_after: Duration::from_secs(
                            fanout_settings.dead_letter_after_hours * 3600,
                        ),
                        circuit_failures: fanout_settings.circuit_failures,
                        backoff: Backoff {
                            base: Duration::from_millis(fanout_settings.backoff_base_ms),
                            cap: Duration::from_millis(fanout_settings.backoff_cap_ms),
                        },
                        guard,
                        recreate_vanished: table
                            .is_none_or(|t| t.reconcile.on_missing == OnMissing::Recreate),
                    },
                )
            })
            .collect();
        let fanout = Arc::new(Fanout::start(
            workers,
            Duration::from_millis(fanout_settings.poll_ms),
        ));
        let reconciles = web::Data::new(Reconciles::new(Arc::new(reconcile::reconciler(
            &settings,
            db.clone(),
            clock.clone(),
            &targets,
            Some(Arc::clone(&fanout)),
        ))));
        if let Interval(Some(period)) = settings.reconcile.interval {
            reconciles.schedule(period, settings.reconcile.apply_on_schedule);
        }
        let planner = Arc::new(Planner::new(mappings, secrets));
        let planning = planner::start(
            Arc::clone(&planner),
            db.clone(),
            Arc::clone(&fanout),
            clock.clone(),
        );
        let service = ScimService::new(
            db.clone(),
            clock.clone(),
            Some(Arc::new(FanoutHook::new(
                Arc::clone(&planner),
                Arc::clone(&fanout),
                planning.wake(),
            ))),
        )
        .with_metrics(Arc::clone(&metrics));
        let operator = Operator::new(db.clone(), clock.clone(), settings.target_names())
            .waking(Arc::clone(&fanout));
        let console = web::Data::new(Console::new(
            clock.clone(),
            service.clone(),
            Arc::clone(&planner),
            target_schemas(&targets),
        ));
        let reloader = web::Data::new(Reloader::new(
            settings.fanout.mappings_dir.clone(),
            target_schemas(&targets),
            planner,
            service.clone(),
            operator.clone(),
        ));
        reload_on_sighup(reloader.clone().into_inner());
        prune_history(
            db.clone(),
            clock.clone(),
            Duration::from_secs(settings.fanout.history_retention_days * 24 * 3600),
            Duration::from_secs(settings.reconcile.retention_days * 24 * 3600),
        );

        let (scim_auth, admin_auth, scrape_access) = authenticators(&settings, &options)?;

        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            address = %listener.local_addr()?,
            database = %settings.database.path.display(),
            targets = ?settings.target_names(),
            "SCIM API listening at /scim/v2"
        );

        let scim = web::Data::new(ScimState {
            service,
            settings: settings.scim.clone(),
        });
        let scim_auth = web::Data::new(ScimAuth(scim_auth));
        let admin_auth = web::Data::new(AdminAuth(admin_auth));
        let operator = web::Data::new(operator);
        let metrics = web::Data::from(metrics);
        let scrape_access = web::Data::new(scrape_access);
        let proxies = web::Data::new(settings.server.trusted_proxies.clone());
        let clock = web::Data::new(clock);
        let db_handle = db.clone();
        let db = web::Data::new(db);
        let body_limit = settings.server.max_body_bytes;
        let bulk_limit = settings.scim.bulk_max_payload_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RedactedRootSpan>::new())
                .app_data(scim.clone())
                .app_data(scrape_access.clone())
                .app_data(proxies.clone())
                .app_data(scim_auth.clone())
                .app_data(admin_auth.clone())
                .app_data(operator.clone())
                .app_data(metrics.clone())
                .app_data(clock.clone())
                .app_data(db.clone())
                .app_data(reloader.clone())
                .app_data(console.clone())
                .app_data(reconciles.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics_text))
                .configure(admin::configure)
                .configure(console::configure)
                .configure(|cfg| routes::configure(cfg, body_limit, bulk_limit))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // A worker's blocking work is its ledger reads, of which the pool lets `readers` run.
        .worker_max_blocking_threads(settings.database.readers.max(1))
        .client_request_timeout(Duration::from_secs(30))
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            db: db_handle,
            planning,
            fanout,
            sandbox,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, lets in-flight requests finish, then the planner's batch
    /// in flight, then gives in-flight deliveries the same grace period; what is left stays
    /// in the ledger (marks to plan, rows due), and no write races the final checkpoint.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.planning.shutdown(self.shutdown_timeout).await;
        self.fanout.shutdown(self.shutdown_timeout).await;
        if let Err(err) = self.db.checkpoint().await {
            tracing::warn!(error = %err, "final WAL checkpoint failed; SQLite replays the log on the next start");
        }
        if let Some(sandbox) = self.sandbox {
            sandbox.stop().await;
        }
        served
    }
}

/// Everything `serve` checks before it binds, without opening the database or starting
/// anything: every token source and target secret resolves, and every mapping passes.
/// `scim-bridge config check` runs it, so a configuration that passes it also starts.
pub(crate) fn check(settings: &Settings) -> anyhow::Result<()> {
    let options = BuildOptions::default();
    authenticators(settings, &options)?;
    let targets = build_targets(&settings.targets, options.clock.clone())?;
    load_mappings(settings, &targets)?;
    Ok(())
}

/// The authenticators of the SCIM API, the admin API and `/metrics`. They share one limit
/// on failed attempts per client address, so guessing cannot move from one to the other.
fn authenticators(
    settings: &Settings,
    options: &BuildOptions,
) -> anyhow::Result<(Authenticator, Authenticator, ScrapeAccess)> {
    let failures = Arc::new(FailedAuthLimit::new(
        settings.server.failed_auth_per_minute,
        options.clock.clone(),
    ));
    let scim_dev = settings.scim.dev_token.as_ref().map(|t| t.expose_secret());
    let scim_auth = Authenticator::new(
        "scim",
        &settings.scim.clients,
        scim_dev,
        options.extra_token.as_deref(),
        settings.scim.requests_per_second,
        Arc::clone(&failures),
    )?;
    if let Some(token) = scim_dev {
        // Printed on purpose: the embedded default is for trying the bridge out.
        tracing::warn!(
            token = %token,
            "accepting the development bearer token from the configuration; \
             configure [[scim.clients]] and remove scim.dev_token in production"
        );
    }
    let admin_dev = settings.admin.dev_token.as_ref().map(|t| t.expose_secret());
    let admin_auth = Authenticator::new(
        "admin",
        &settings.admin.clients,
        admin_dev,
        None,
        settings.admin.requests_per_second,
        Arc::clone(&failures),
    )?;
    if let Some(token) = admin_dev {
        tracing::warn!(token = %token, "accepting the development admin token from the configuration");
    }
    let scrape_access = match settings.metrics.client() {
        Some(client) => ScrapeAccess::Token(Authenticator::new(
            "metrics",
            std::slice::from_ref(&client),
            None,
            None,
            settings.admin.requests_per_second,
            failures,
        )?),
        None => {
            if !settings.scim.clients.is_empty() {
                tracing::info!(
                    "/metrics answers this host only; set [metrics] token_file to scrape it \
                     from elsewhere"
                );
            }
            ScrapeAccess::LoopbackOnly
        }
    };
    Ok((scim_auth, admin_auth, scrape_access))
}

/// Loads the mapping of every enabled target; an invalid or missing one stops the start.
fn load_mappings(settings: &Settings, targets: &[Arc<dyn Target>]) -> anyhow::Result<MappingSet> {
    let dir = &settings.fanout.mappings_dir;
    let schemas = target_schemas(targets);
    if targets.is_empty() {
        return MappingSet::load_dir(dir, &schemas).or_else(|_| Ok(MappingSet::default()));
    }
    let mappings = MappingSet::load_dir(dir, &schemas).map_err(|errors| {
        let listed: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "the mappings in {} are invalid; run `scim-bridge mappings check` for details:\n{}",
            dir.display(),
            listed.join("\n")
        )
    })?;
    let missing: Vec<&str> = targets
        .iter()
        .map(|t| t.name())
        .filter(|name| mappings.get(name).is_none())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "no mapping file for target(s) {} in {}: each enabled target needs <name>.toml",
        missing.join(", "),
        dir.display()
    );
    Ok(mappings)
}

fn target_schemas(targets: &[Arc<dyn Target>]) -> BTreeMap<String, TargetSchema> {
    targets
        .iter()
        .map(|t| (t.name().to_owned(), t.schema().clone()))
        .collect()
}

/// Deletes attempt history and audit entries older than the retention, and reconcile runs
/// with their findings older than theirs, once an hour.
fn prune_history(db: Db, clock: SharedClock, retention: Duration, runs_retention: Duration) {
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let now = unix_millis(clock.as_ref());
            let runs_before = now - runs_retention.as_millis() as i64;
            match db.write(move |s| s.prune_reconcile_runs(runs_before)).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned reconcile runs past their retention"),
                Err::<usize, LedgerError>(err) => {
                    tracing::warn!(error = %err, "cannot prune reconcile runs")
                }
            }
            let before = now - retention.as_millis() as i64;
            let pruned = db
                .write(move |s| Ok((s.prune_attempts(before)?, s.prune_audit(before)?)))
                .await;
            match pruned {
                Ok((0, 0)) => {}
                Ok((pruned, audit)) => tracing::info!(
                    pruned,
                    audit,
                    "pruned delivery history and audit entries past their retention"
                ),
                Err::<_, LedgerError>(err) => {
                    tracing::warn!(error = %err, "cannot prune delivery history")
                }
            }
        }
    });
}

/// `kill -HUP` reloads the mappings, as an admin request does.
fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload mappings through the admin API");
            return;
        };
        while hangups.recv().await.is_some() {
            if let Err(errors) = reloader.reload(&Actor::Signal).await {
                tracing::error!(
                    ?errors,
                    "new mappings refused; the previous ones stay in force"
                );
            }
        }
    });
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn metrics_text(
    req: HttpRequest,
    access: web::Data<ScrapeAccess>,
    proxies: web::Data<crate::config::TrustedProxies>,
    metrics: web::Data<Metrics>,
    operator: web::Data<Operator>,
    reconciles: web::Data<Reconciles>,
    clock: web::Data<SharedClock>,
) -> HttpResponse {
    let address = client_address(req.peer_addr(), req.headers(), &proxies);
    if let Some(refused) = access.refusal(&req, address, &proxies) {
        return refused;
    }
    let lag = match operator.lag().await {
        Ok(lag) => lag,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the ledger for metrics");
            Vec::new()
        }
    };
    match operator.omissions().await {
        Ok(rows) => metrics.set_omissions(&rows),
        Err(err) => tracing::warn!(error = %err, "cannot read the mapping omissions for metrics"),
    }
    // Read at scrape time: a run made by `scim-bridge reconcile` in another process counts.
    match reconciles.last_finished().await {
        Ok(Some(run)) => metrics.set_reconcile(&run, operator.targets()),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read the last reconcile run for metrics"),
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render(&lag, unix_millis(clock.as_ref().as_ref())))
}

/// Ready when the database answers reads and takes writes: a bridge that cannot store what
/// it is sent (full disk, I/O errors) is taken out of rotation until a write goes through.
async fn readyz(db: web::Data<Db>) -> HttpResponse {
    if let Err::<(), LedgerError>(err) = db.read(|store| store.ping()).await {
        tracing::warn!(error = %err, "readiness check failed");
        return HttpResponse::ServiceUnavailable().json(json!({"status": "database unavailable"}));
    }
    match db.writable().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed: writes are refused");
            HttpResponse::ServiceUnavailable()
                .insert_header((
                    actix_web::http::header::RETRY_AFTER,
                    UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                ))
                .json(json!({"status": "database not writable", "detail": err.to_string()}))
        }
    }
}
