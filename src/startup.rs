//! The one place that wires every module together: database, services, HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use tracing_actix_web::TracingLogger;

use crate::admin::{self, AdminAuth};
use crate::clock::{unix_millis, SharedClock, SystemClock};
use crate::config::Settings;
use crate::fanout::operator::Operator;
use crate::ledger::{Db, DbOptions, LedgerError};
use crate::metrics::Metrics;
use crate::scim::auth::{Authenticator, ScimAuth};
use crate::scim::routes::{self, ScimState};
use crate::scim::service::ScimService;

/// What the caller chooses beyond the settings.
#[derive(Clone)]
pub struct BuildOptions {
    pub clock: SharedClock,
    /// One more accepted bearer token (`SCIM_BRIDGE_TOKEN`).
    pub extra_token: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            clock: Arc::new(SystemClock),
            extra_token: None,
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens the database and binds the listener (port 0 picks a free port).
    pub fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Application> {
        let db = Db::open(&DbOptions {
            path: settings.database.path.clone(),
            readers: settings.database.readers,
        })?;
        let scim_auth = Authenticator::new(
            "scim",
            &settings.scim.clients,
            settings.scim.dev_token.as_deref(),
            options.extra_token.as_deref(),
            settings.scim.requests_per_second,
        )?;
        if let Some(token) = &settings.scim.dev_token {
            tracing::warn!(
                token = %token,
                "accepting the development bearer token from the configuration; \
                 configure [[scim.clients]] and remove scim.dev_token in production"
            );
        }
        let listener = TcpListener::bind(settings.server.listen)?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            address = %listener.local_addr()?,
            database = %settings.database.path.display(),
            "SCIM API listening at /scim/v2"
        );

        let scim = web::Data::new(ScimState {
            service: ScimService::new(db.clone(), options.clock.clone(), None),
            settings: settings.scim.clone(),
        });
        let admin_auth = Authenticator::new(
            "admin",
            &settings.admin.clients,
            settings.admin.dev_token.as_deref(),
            None,
            settings.scim.requests_per_second,
        )?;
        if settings.admin.dev_token.is_some() {
            tracing::warn!("accepting the development admin token from the configuration");
        }
        let scim_auth = web::Data::new(ScimAuth(scim_auth));
        let admin_auth = web::Data::new(AdminAuth(admin_auth));
        let operator = web::Data::new(Operator::new(
            db.clone(),
            options.clock.clone(),
            settings.target_names(),
        ));
        let metrics = web::Data::new(Metrics::new());
        let clock = web::Data::new(options.clock.clone());
        let db = web::Data::new(db);
        let body_limit = settings.server.max_body_bytes;
        let bulk_limit = settings.scim.bulk_max_payload_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .app_data(scim.clone())
                .app_data(scim_auth.clone())
                .app_data(admin_auth.clone())
                .app_data(operator.clone())
                .app_data(metrics.clone())
                .app_data(clock.clone())
                .app_data(db.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics_text))
                .configure(admin::configure)
                .configure(|cfg| routes::configure(cfg, body_limit, bulk_limit))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .client_request_timeout(Duration::from_secs(30))
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn metrics_text(
    metrics: web::Data<Metrics>,
    operator: web::Data<Operator>,
    clock: web::Data<SharedClock>,
) -> HttpResponse {
    let lag = match operator.lag().await {
        Ok(lag) => lag,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the ledger for metrics");
            Vec::new()
        }
    };
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render(&lag, unix_millis(clock.as_ref().as_ref())))
}

async fn readyz(db: web::Data<Db>) -> HttpResponse {
    match db.read(|store| store.ping()).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err::<(), LedgerError>(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "database unavailable"}))
        }
    }
}
