//! The sandbox: an emulator of each target API on loopback. The embedded default config
//! points every target at it, `scim-bridge sandbox` runs it alone on the default ports, and
//! tests start it on port 0 and reach into it through the handles.

pub mod appgate;
mod console;
pub mod contract;
mod emulator;
pub mod faults;
mod index;
pub mod kibo;
pub mod primavera;
pub mod vikingcloud;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::dev::ServerHandle;
use actix_web::web;
use tokio::task::JoinHandle;

use self::emulator::EmulatorState;
pub(crate) use self::emulator::Flavor;
pub use self::emulator::{AccountSnapshot, ConsoleCounts, Counts};
pub use self::faults::Faults;
use crate::clock::SharedClock;
use crate::targets::config::TargetsConfig;
use crate::targets::vendor::Vendor;
use crate::targets::Payload;
use crate::targets::VENDORS;

/// The login every emulator accepts (Appgate, VikingCloud, Primavera), and the one the
/// default config uses. Development only.
pub const DEV_USERNAME: &str = "bridge@sandbox.test";
pub const DEV_PASSWORD: &str = "sandbox-password";
/// The Kibo application credentials and context the Kibo emulator accepts.
pub const DEV_CLIENT_ID: &str = "scim-bridge-sandbox";
pub const DEV_CLIENT_SECRET: &str = "sandbox-client-secret";
pub const DEV_KIBO_TENANT: &str = "10000";
pub const DEV_KIBO_SITE: &str = "20000";
/// The tenant code the Primavera emulator's token request answers with.
pub const DEV_PRIMAVERA_TENANT: &str = "SANDBOX";

/// The default config's targets with `{<kind>}` (`{appgate}`, `{kibo}`, ...) standing for
/// each emulator's origin.
const TARGETS_TEMPLATE: &str = include_str!("targets.toml");

/// One emulator's settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// 0 picks any free port.
    pub port: u16,
    /// How long issued tokens live.
    pub token_ttl_secs: u64,
    /// Requests per second before 429 (with no `Retry-After`), for APIs that document a
    /// limit.
    pub rate_limit_per_second: Option<u32>,
    /// The faults in force at start, and again after a reset.
    pub faults: Faults,
    /// Kibo: accept a PUT without the password and keep the one held. Kibo's reference
    /// requires it on every PUT, which is the default; a tenant that does not can be
    /// emulated with this (and the adapter's `password_required_on_update = false`).
    pub keeps_password_when_omitted: bool,
}

impl EmulatorConfig {
    fn on_port(port: u16) -> Self {
        Self {
            port,
            token_ttl_secs: 3_600,
            rate_limit_per_second: None,
            faults: Faults::default(),
            keeps_password_when_omitted: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub host: IpAddr,
    /// One emulator per entry of `targets::VENDORS`.
    pub emulators: Vec<(&'static Vendor, EmulatorConfig)>,
}

impl Default for SandboxConfig {
    /// Loopback, on the ports the default config points at.
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            emulators: VENDORS
                .iter()
                .map(|vendor| {
                    let emulator = EmulatorConfig {
                        rate_limit_per_second: vendor.emulator.rate_limit_per_second,
                        ..EmulatorConfig::on_port(vendor.emulator.port)
                    };
                    (*vendor, emulator)
                })
                .collect(),
        }
    }
}

impl SandboxConfig {
    /// The same emulators with no per-second limit, for load tests of the bridge itself.
    pub(crate) fn without_rate_limits(mut self) -> Self {
        for (_, emulator) in &mut self.emulators {
            emulator.rate_limit_per_second = None;
        }
        self
    }

    /// The defaults on free ports, for tests running side by side.
    pub fn ephemeral() -> Self {
        let mut cfg = Self::default();
        for (_, emulator) in &mut cfg.emulators {
            emulator.port = 0;
        }
        cfg
    }

    pub fn emulator_mut(&mut self, vendor: &Vendor) -> Option<&mut EmulatorConfig> {
        self.emulators
            .iter_mut()
            .find(|(kind, _)| *kind == vendor)
            .map(|(_, emulator)| emulator)
    }
}

/// A running emulator, for pointing targets at it and for looking inside.
#[derive(Clone)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    state: web::Data<EmulatorState>,
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, where the control endpoint lives.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Exactly what a `TargetConfig.base_url` for this emulator should be.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin(), self.state.flavor.base_path)
    }

    /// Every account it holds or held (deleted ones flagged), with its write counts.
    pub fn accounts(&self) -> Vec<AccountSnapshot> {
        self.state.snapshot()
    }

    /// One live account by the emulator's id for it.
    pub fn account(&self, id: &str) -> Option<AccountSnapshot> {
        self.accounts()
            .into_iter()
            .find(|account| account.id == id && !account.deleted)
    }

    /// Stores an account as if someone had created it by hand in the vendor's console
    /// (counted as no create); returns the id the vendor would give it.
    pub fn insert_account(&self, fields: Payload) -> String {
        self.state.seed(fields)
    }

    /// A write-only value an account holds (its password), which no API read returns.
    pub fn secret(&self, id: &str, field: &str) -> Option<String> {
        self.state.secret(id, field)
    }

    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Every token issued so far stops working.
    pub fn expire_tokens(&self) {
        self.state.expire_tokens();
    }

    /// API requests received (the control endpoint not counted).
    pub fn requests(&self) -> u64 {
        self.state.requests()
    }

    /// Tokens issued.
    pub fn logins(&self) -> u64 {
        self.state.logins()
    }

    pub fn reset(&self) {
        self.state.reset();
    }
}

/// The running emulators, one per vendor.
pub struct Sandbox {
    pub emulators: Vec<(&'static Vendor, EmulatorHandle)>,
    servers: Vec<(ServerHandle, JoinHandle<std::io::Result<()>>)>,
}

/// Binds every emulator and starts serving. Needs a running tokio runtime.
pub async fn start(cfg: SandboxConfig, clock: SharedClock) -> std::io::Result<Sandbox> {
    let mut servers = Vec::new();
    let mut emulators = Vec::new();
    for (vendor, emulator) in &cfg.emulators {
        let flavor = (vendor.emulator.flavor)();
        let state = web::Data::new(EmulatorState::new(flavor, emulator, clock.clone()));
        let (addr, server) = emulator::serve(cfg.host, emulator.port, state.clone())?;
        servers.push(server);
        tracing::info!(%addr, base_path = state.flavor.base_path, "sandbox emulator listening");
        emulators.push((*vendor, EmulatorHandle { addr, state }));
    }
    let servers = servers
        .into_iter()
        .map(|server| (server.handle(), tokio::spawn(server)))
        .collect();
    Ok(Sandbox { emulators, servers })
}

impl Sandbox {
    pub fn emulator(&self, vendor: &Vendor) -> Option<&EmulatorHandle> {
        self.emulators
            .iter()
            .find(|(kind, _)| *kind == vendor)
            .map(|(_, emulator)| emulator)
    }

    /// The default targets, pointed at these emulators wherever they listen.
    pub fn targets_config(&self) -> Result<TargetsConfig, toml::de::Error> {
        let origins = self
            .emulators
            .iter()
            .map(|(vendor, emulator)| (vendor.kind, emulator.origin()));
        parse_targets(&targets_toml(origins))
    }

    /// Stops every emulator, dropping requests in flight.
    pub async fn stop(self) {
        for (handle, task) in self.servers {
            handle.stop(false).await;
            // The server's own result at shutdown says nothing the caller can act on.
            let _ = task.await;
        }
    }
}

/// The `[targets.*]` tables of the embedded default config: every target pointed at the
/// sandbox on its default ports.
pub fn default_targets_toml() -> String {
    let cfg = SandboxConfig::default();
    let origins = cfg.emulators.iter().map(|(vendor, emulator)| {
        let addr = SocketAddr::new(cfg.host, emulator.port);
        (vendor.kind, format!("http://{addr}"))
    });
    targets_toml(origins)
}

/// The template with each `{<kind>}` replaced by that emulator's origin.
fn targets_toml(origins: impl Iterator<Item = (&'static str, String)>) -> String {
    origins.fold(TARGETS_TEMPLATE.to_owned(), |text, (kind, origin)| {
        text.replace(&format!("{{{kind}}}"), &origin)
    })
}

fn parse_targets(text: &str) -> Result<TargetsConfig, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct Tables {
        targets: TargetsConfig,
    }
    toml::from_str::<Tables>(text).map(|tables| tables.targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_targets_point_at_the_default_ports() {
        let text = default_targets_toml();
        assert!(!text.contains("{appgate}"), "{text}");
        let targets = parse_targets(&text).unwrap();
        let kinds: Vec<_> = targets.values().map(|target| target.kind()).collect();
        assert_eq!(kinds.len(), VENDORS.len());
        assert!(VENDORS.iter().all(|vendor| kinds.contains(vendor)));
        assert_eq!(targets["appgate"].base_url, "http://127.0.0.1:18441/admin");
        assert_eq!(
            targets["primavera"].base_url,
            "http://127.0.0.1:18444/api/restapi"
        );
    }
}
