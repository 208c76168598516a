//! The admin console under `/console`: server-rendered pages over the same operations as the
//! admin API and the CLI (`Operator`, `Reloader`, the mapping commands), behind a sign-in with
//! an admin token. Each page is a module with its routes; a new page adds one and a nav entry.

mod assets;
mod audit;
mod chart;
mod deliveries;
mod diffjob;
mod error;
mod failures;
mod held;
mod highlight;
mod layout;
mod mappings;
mod overview;
mod reconcile;
mod session;
mod sync;
mod threeway;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;

use crate::clock::SharedClock;
use crate::fanout::operator::Operator;
use crate::fanout::plan::Planner;
use crate::scim::service::ScimService;
use crate::targets::TargetSchema;

pub(crate) use error::ConsoleError;
use session::Sessions;

/// Refuses a form naming a target the bridge does not have, listing those it has.
fn configured_target(ops: &Operator, target: &str) -> Result<(), ConsoleError> {
    if ops.targets().iter().any(|name| name == target) {
        return Ok(());
    }
    Err(ConsoleError::NotFound(format!(
        "no target named {target}; configured: {}",
        ops.targets().join(", ")
    )))
}

/// Scripts only from the console's own embedded files (no inline script, no eval), styles
/// only from its stylesheet, and never inside a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// What the console needs beyond the app data the admin API already shares.
pub(crate) struct Console {
    sessions: Sessions,
    minutes: chart::MinuteCache,
    diffs: diffjob::DiffJobs,
    service: ScimService,
    planner: Arc<Planner>,
    schemas: BTreeMap<String, TargetSchema>,
}

impl Console {
    pub(crate) fn new(
        clock: SharedClock,
        service: ScimService,
        planner: Arc<Planner>,
        schemas: BTreeMap<String, TargetSchema>,
    ) -> Console {
        Console {
            sessions: Sessions::new(Arc::clone(&clock)),
            minutes: chart::MinuteCache::default(),
            diffs: diffjob::DiffJobs::new(clock),
            service,
            planner,
            schemas,
        }
    }
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add(("Cache-Control", "no-store")),
            )
            .app_data(web::FormConfig::default().error_handler(|err, _| {
                ConsoleError::BadRequest(format!("the form is incomplete or malformed: {err}"))
                    .into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ConsoleError::BadRequest(format!("the query string is malformed: {err}")).into()
            }))
            .configure(assets::configure)
            .configure(session::configure)
            .configure(overview::configure)
            .configure(users::configure)
            .configure(failures::configure)
            .configure(deliveries::configure)
            .configure(mappings::configure)
            .configure(reconcile::configure)
            .configure(held::configure)
            .configure(audit::configure)
            .configure(sync::configure),
    );
}
