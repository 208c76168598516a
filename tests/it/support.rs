//! Helpers shared by the integration tests: a sandbox on free ports with a clock the test
//! moves, targets built from the default config pointed at it, and JSON payloads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scim_bridge::clock::ManualClock;
use scim_bridge::sandbox::{self, EmulatorHandle, Sandbox, SandboxConfig};
use scim_bridge::targets::config::{build_targets, TargetConfig, TargetKind};
use scim_bridge::targets::{Payload, Target};
use serde_json::Value;

pub struct Env {
    pub sandbox: Sandbox,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(SandboxConfig::ephemeral()).await
    }

    pub async fn start_with(cfg: SandboxConfig) -> Self {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let sandbox = sandbox::start(cfg, clock.clone()).await.unwrap();
        Self { sandbox, clock }
    }

    pub fn emulator(&self, kind: TargetKind) -> &EmulatorHandle {
        self.sandbox.emulator(kind)
    }

    /// The default config's target of `kind`, pointed at this sandbox, after `tweak`.
    pub fn target(
        &self,
        kind: TargetKind,
        tweak: impl FnOnce(&mut TargetConfig),
    ) -> Arc<dyn Target> {
        let mut cfg = self.sandbox.targets_config().unwrap();
        cfg.retain(|_, target| target.kind() == kind);
        let (_, target) = cfg.iter_mut().next().unwrap();
        tweak(target);
        let mut targets = build_targets(&cfg, self.clock.clone()).unwrap();
        assert_eq!(targets.len(), 1);
        targets.remove(0)
    }

    /// Moves the clock past the current second, so per-second rate limits start afresh.
    pub fn next_second(&self) {
        self.clock.advance(Duration::from_secs(1));
    }
}

pub fn object(value: Value) -> Payload {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}
