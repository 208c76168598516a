//! Mapping reload, on SIGHUP or an admin request: a valid new set replaces the old one and
//! every user is marked to be planned again; an invalid one is refused and the old one
//! stays in force. Either way the audit trail records who asked, and the mapping versions
//! before and after.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::fanout::operator::Operator;
use crate::fanout::plan::Planner;
use crate::ledger::{Actor, AuditAction, AuditOutcome};
use crate::mapping::MappingSet;
use crate::scim::service::ScimService;
use crate::targets::TargetSchema;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ReloadReport {
    /// Mapping version per target now in force.
    pub versions: BTreeMap<String, String>,
    /// Users marked to be planned again with the new mappings. The planner records their
    /// desired states after the answer; `planning` in `GET /admin/targets` counts it down.
    pub users: usize,
}

pub(crate) struct Reloader {
    dir: PathBuf,
    schemas: BTreeMap<String, TargetSchema>,
    planner: Arc<Planner>,
    service: ScimService,
    operator: Operator,
    /// One reload at a time: two racing replans would only do the work twice.
    running: Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        dir: PathBuf,
        schemas: BTreeMap<String, TargetSchema>,
        planner: Arc<Planner>,
        service: ScimService,
        operator: Operator,
    ) -> Reloader {
        Reloader {
            dir,
            schemas,
            planner,
            service,
            operator,
            running: Mutex::new(()),
        }
    }

    /// Loads the mapping directory again, for `actor`. On any problem, returns every error
    /// message and leaves the mappings in force untouched.
    pub(crate) async fn reload(&self, actor: &Actor) -> Result<ReloadReport, Vec<String>> {
        let _one_at_a_time = self.running.lock().await;
        let old: BTreeMap<String, String> = self
            .planner
            .mappings()
            .iter()
            .map(|m| (m.target().to_owned(), m.version().to_owned()))
            .collect();
        let result = self.load_and_replan().await;
        let (detail, outcome) = match &result {
            Ok(report) => (
                json!({"old": old, "new": report.versions, "users": report.users}),
                AuditOutcome::Ok,
            ),
            Err((outcome, errors)) => (json!({"old": old, "errors": errors}), *outcome),
        };
        let recorded = self
            .operator
            .record(actor, AuditAction::MappingReload, detail, outcome)
            .await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, "cannot record the mapping reload in the audit trail");
        }
        result.map_err(|(_, errors)| errors)
    }

    /// The reload itself; a failure says whether the new set was refused (nothing changed)
    /// or failed once in force.
    async fn load_and_replan(&self) -> Result<ReloadReport, (AuditOutcome, Vec<String>)> {
        let refused = |errors| (AuditOutcome::Refused, errors);
        let mappings = MappingSet::load_dir(&self.dir, &self.schemas)
            .map_err(|errors| refused(errors.iter().map(ToString::to_string).collect()))?;
        let missing: Vec<String> = self
            .schemas
            .keys()
            .filter(|target| mappings.get(target).is_none())
            .map(|target| format!("no mapping file for target {target}"))
            .collect();
        if !missing.is_empty() {
            return Err(refused(missing));
        }
        let versions = mappings
            .iter()
            .map(|m| (m.target().to_owned(), m.version().to_owned()))
            .collect();
        self.planner.replace_mappings(mappings);
        let users = self.service.replan_all().await.map_err(|err| {
            (
                AuditOutcome::Failed,
                vec![format!(
                    "the new mappings are in force, but recording desired states failed: {err}"
                )],
            )
        })?;
        tracing::info!(
            ?versions,
            users,
            "mappings reloaded; every user is marked to be planned again"
        );
        Ok(ReloadReport { versions, users })
    }
}
