//! Mapping reload, on SIGHUP or an admin request: a valid new set replaces the old one and
//! every user's desired state is recorded again; an invalid one is refused and the old one
//! stays in force.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::fanout::plan::Planner;
use crate::mapping::MappingSet;
use crate::scim::service::ScimService;
use crate::targets::TargetSchema;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ReloadReport {
    /// Mapping version per target now in force.
    pub versions: BTreeMap<String, String>,
    /// Users whose desired state was recorded again.
    pub users: usize,
}

pub(crate) struct Reloader {
    dir: PathBuf,
    schemas: BTreeMap<String, TargetSchema>,
    planner: Arc<Planner>,
    service: ScimService,
    /// One reload at a time: two racing replans would only do the work twice.
    running: Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        dir: PathBuf,
        schemas: BTreeMap<String, TargetSchema>,
        planner: Arc<Planner>,
        service: ScimService,
    ) -> Reloader {
        Reloader {
            dir,
            schemas,
            planner,
            service,
            running: Mutex::new(()),
        }
    }

    /// Loads the mapping directory again. On any problem, returns every error message and
    /// leaves the mappings in force untouched.
    pub(crate) async fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let _one_at_a_time = self.running.lock().await;
        let mappings = MappingSet::load_dir(&self.dir, &self.schemas)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let missing: Vec<String> = self
            .schemas
            .keys()
            .filter(|target| mappings.get(target).is_none())
            .map(|target| format!("no mapping file for target {target}"))
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        let versions = mappings
            .iter()
            .map(|m| (m.target().to_owned(), m.version().to_owned()))
            .collect();
        self.planner.replace_mappings(mappings);
        let users = self.service.replan_all().await.map_err(|err| {
            vec![format!(
                "the new mappings are in force, but recording desired states failed: {err}"
            )]
        })?;
        tracing::info!(?versions, users, "mappings reloaded");
        Ok(ReloadReport { versions, users })
    }
}
