//! Configuration: the embedded `config/bridge.toml`, or the file given with `--config`, then
//! `SCIM_BRIDGE__SECTION__KEY` environment overrides, then command-line flags. Validated once
//! here; the rest of the bridge receives typed settings.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::reconcile::policy::ReconcileSettings;
use crate::targets::config::TargetsConfig;

/// The shipped default configuration, compiled into the binary so that `scim-bridge serve`
/// runs with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/bridge.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub scim: ScimSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub fanout: FanoutSettings,
    #[serde(default)]
    pub sandbox: SandboxSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// How often and how hard the targets are read back and compared with the ledger.
    #[serde(default)]
    pub reconcile: ReconcileSettings,
    /// The `[targets.<name>]` tables: where each target API is and how to reach it.
    #[serde(default)]
    pub targets: TargetsConfig,
}

/// The built-in emulators of the four target APIs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// `serve` starts the emulators in-process on their default ports (18441 to 18444),
    /// where the embedded default's targets point. `serve --no-sandbox` overrides it.
    pub start: bool,
    /// The emulators enforce the per-second limits their vendors document (Primavera's 55).
    /// `scim-bridge bench` turns this off to measure the bridge rather than a vendor's quota.
    pub vendor_rate_limits: bool,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            start: false,
            vendor_rate_limits: true,
        }
    }
}

/// Who may call the operator's API under `/admin` (its own tokens, never the SCIM ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// A development admin token, printed with a warning at start. Refused beside
    /// `[[admin.clients]]`.
    pub dev_token: Option<SecretString>,
    pub clients: Vec<ClientSettings>,
    /// Per-client rate limit of the admin API (and of `/metrics` scrapes) unless the client
    /// sets its own. Operators and scrapers call far less often than identity providers,
    /// so this is the admin API's own setting, not the SCIM one.
    pub requests_per_second: u32,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            dev_token: None,
            clients: Vec::new(),
            requests_per_second: 100,
        }
    }
}

/// Who may scrape `/metrics`. With a token source, a scrape must carry it as a bearer token;
/// without one, only loopback peers that are not trusted proxies are answered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Hex SHA-256 of the scrape token.
    pub token_sha256: Option<String>,
    /// Name of an environment variable holding the scrape token.
    pub token_env: Option<String>,
    /// Path of a file holding the scrape token (Prometheus' `credentials_file` can read the
    /// same file).
    pub token_file: Option<PathBuf>,
}

impl MetricsSettings {
    /// The scrape token as a client entry, when one is configured.
    pub(crate) fn client(&self) -> Option<ClientSettings> {
        let configured =
            self.token_sha256.is_some() || self.token_env.is_some() || self.token_file.is_some();
        configured.then(|| ClientSettings {
            name: "prometheus".to_owned(),
            token_sha256: self.token_sha256.clone(),
            token_env: self.token_env.clone(),
            token_file: self.token_file.clone(),
            requests_per_second: None,
        })
    }
}

/// Addresses of reverse proxies whose `X-Forwarded-*` and `Forwarded` headers are believed.
/// Entries are addresses (`127.0.0.1`) or ranges (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        serde::de::Error::custom(format!(
                            "`{entry}` is neither an IP address nor a CIDR range such as 10.0.0.0/8"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

/// How changes are delivered to the targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FanoutSettings {
    /// Retryable failures, while the target otherwise works, before a delivery is
    /// dead-lettered. Failures while the target as a whole is down or throttling do not count.
    pub max_attempts: u32,
    /// A delivery still failing this many hours after its first failure is dead-lettered,
    /// however its failures were counted.
    pub dead_letter_after_hours: u64,
    /// Target-level failures in a row (429, 502-504, timeouts, refused connections) that
    /// open a target's circuit: then only one probe delivery goes at the backoff cadence.
    pub circuit_failures: u32,
    /// First retry waits up to this long (full jitter), doubling per attempt...
    pub backoff_base_ms: u64,
    /// ...up to this ceiling.
    pub backoff_cap_ms: u64,
    /// How often workers look for due retries when nothing wakes them.
    pub poll_ms: u64,
    /// Days of attempt history to keep.
    pub history_retention_days: u64,
    /// Key file for passwords at rest, used when SCIM_BRIDGE_SECRET_KEY is not set.
    pub key_file: PathBuf,
    /// Directory of the mapping files, one `<target>.toml` per target.
    pub mappings_dir: PathBuf,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        FanoutSettings {
            max_attempts: 8,
            dead_letter_after_hours: 72,
            circuit_failures: 5,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 300_000,
            poll_ms: 1_000,
            history_retention_days: 30,
            key_file: PathBuf::from("data/secret.key"),
            mappings_dir: PathBuf::from("mappings"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Reverse proxies whose forwarding headers are believed (for `meta.location` and for
    /// the client address the failed-authentication limit counts). None by default.
    pub trusted_proxies: TrustedProxies,
    /// Failed authentications accepted per client address and minute (SCIM, admin and
    /// metrics together) before further failures are answered 429.
    pub failed_auth_per_minute: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Human,
            shutdown_timeout_secs: 30,
            trusted_proxies: TrustedProxies::default(),
            failed_auth_per_minute: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub path: PathBuf,
    /// Read-only connections for queries, beside the single writer.
    pub readers: usize,
    /// A ceiling on the database file, in MiB: past it writes are refused with 503 and
    /// readiness fails, as on a full disk, instead of filling a disk other services share.
    pub max_size_mb: Option<u64>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            path: PathBuf::from("data/scim-bridge.db"),
            readers: 4,
            max_size_mb: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimSettings {
    /// A token accepted for local development, printed with a warning at start. Refused
    /// beside `[[scim.clients]]`.
    pub dev_token: Option<SecretString>,
    /// The identity-provider clients allowed to call the SCIM API.
    pub clients: Vec<ClientSettings>,
    /// Page size when a list request gives no `count`.
    pub default_page_size: usize,
    /// The largest page served; larger `count` values are capped to it.
    pub max_page_size: usize,
    pub bulk_max_operations: usize,
    pub bulk_max_payload_bytes: usize,
    /// Requests per second per client unless the client sets its own.
    pub requests_per_second: u32,
}

impl Default for ScimSettings {
    fn default() -> Self {
        ScimSettings {
            dev_token: None,
            clients: Vec::new(),
            default_page_size: 100,
            max_page_size: 1000,
            bulk_max_operations: 1000,
            bulk_max_payload_bytes: 1024 * 1024,
            requests_per_second: 1000,
        }
    }
}

/// One identity-provider client and where its bearer token comes from. Exactly one of the
/// token sources is set; the plain token itself is never written in a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub name: String,
    /// Hex SHA-256 of the token (`scim-bridge token hash` prints it).
    pub token_sha256: Option<String>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// Path of a file holding the token (trailing newline ignored).
    pub token_file: Option<PathBuf>,
    pub requests_per_second: Option<u32>,
}

/// What the command line may override on top of files and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub db: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub no_sandbox: bool,
}

impl Settings {
    /// Loads settings from `file` (or the embedded default), the environment and `overrides`.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let (base, label) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                (Toml::string(&text), path.display().to_string())
            }
            None => (
                Toml::string(EMBEDDED_DEFAULT),
                "the embedded default (config/bridge.toml)".to_owned(),
            ),
        };
        let figment = Figment::new()
            .merge(base)
            .merge(Env::prefixed("SCIM_BRIDGE__").split("__"));
        Settings::from_figment(figment, &label, overrides)
    }

    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let figment = Figment::new().merge(Toml::string(text));
        Settings::from_figment(figment, "the configuration text", overrides)
    }

    /// `label` names the file the values came from, for errors an operator must fix there.
    fn from_figment(
        figment: Figment,
        label: &str,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.refuse_dev_tokens_beside_clients(&figment, label)?;
        if let Some(listen) = overrides.listen {
            settings.server.listen = listen;
        }
        if let Some(db) = &overrides.db {
            settings.database.path = db.clone();
        }
        if let Some(format) = overrides.log_format {
            settings.server.log_format = format;
        }
        if overrides.no_sandbox {
            settings.sandbox.start = false;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The names of the enabled targets.
    pub fn target_names(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, target)| target.enabled)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A copied development config with real clients added would still accept the
    /// published development token: such a configuration does not start.
    fn refuse_dev_tokens_beside_clients(
        &self,
        figment: &Figment,
        label: &str,
    ) -> Result<(), ConfigError> {
        let sections = [
            (
                "scim",
                self.scim.dev_token.is_some(),
                !self.scim.clients.is_empty(),
            ),
            (
                "admin",
                self.admin.dev_token.is_some(),
                !self.admin.clients.is_empty(),
            ),
        ];
        for (section, dev_token, clients) in sections {
            if !(dev_token && clients) {
                continue;
            }
            let key = format!("{section}.dev_token");
            let from_env = figment
                .find_metadata(&key)
                .is_some_and(|meta| meta.name.contains("environment"));
            let origin = if from_env {
                format!(
                    "the environment variable SCIM_BRIDGE__{}__DEV_TOKEN",
                    section.to_uppercase()
                )
            } else {
                label.to_owned()
            };
            return Err(ConfigError::key(
                &key,
                format!(
                    "is set in {origin} while [[{section}.clients]] are configured: the \
                     development token would keep working in production; remove `dev_token` \
                     from [{section}] there"
                ),
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let share = self.reconcile.rate_share;
        if !(share > 0.0 && share < 1.0) {
            return Err(ConfigError::key(
                "reconcile.rate_share",
                "must be above 0 and below 1: the rest of a target's rate stays for deliveries",
            ));
        }
        if self.reconcile.batch == 0 {
            return Err(ConfigError::key("reconcile.batch", "must be at least 1"));
        }
        let scim = &self.scim;
        if scim.default_page_size == 0 || scim.default_page_size > scim.max_page_size {
            return Err(ConfigError::key(
                "scim.default_page_size",
                format!(
                    "must be between 1 and scim.max_page_size ({})",
                    scim.max_page_size
                ),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if scim.requests_per_second == 0 {
            return Err(ConfigError::key(
                "scim.requests_per_second",
                "must be at least 1",
            ));
        }
        if self.admin.requests_per_second == 0 {
            return Err(ConfigError::key(
                "admin.requests_per_second",
                "must be at least 1",
            ));
        }
        for (index, client) in scim.clients.iter().enumerate() {
            let key = format!("scim.clients[{index}]");
            let sources = [
                client.token_sha256.is_some(),
                client.token_env.is_some(),
                client.token_file.is_some(),
            ];
            if sources.iter().filter(|set| **set).count() != 1 {
                return Err(ConfigError::key(
                    &key,
                    format!(
                        "client `{}` needs exactly one of token_sha256, token_env, token_file",
                        client.name
                    ),
                ));
            }
            if client.requests_per_second == Some(0) {
                return Err(ConfigError::key(
                    &format!("{key}.requests_per_second"),
                    "must be at least 1",
                ));
            }
        }
        let empty = |token: &Option<SecretString>| {
            token
                .as_ref()
                .is_some_and(|t| secrecy::ExposeSecret::expose_secret(t).is_empty())
        };
        if empty(&scim.dev_token) {
            return Err(ConfigError::key("scim.dev_token", "must not be empty"));
        }
        if empty(&self.admin.dev_token) {
            return Err(ConfigError::key("admin.dev_token", "must not be empty"));
        }
        if self.server.failed_auth_per_minute == 0 {
            return Err(ConfigError::key(
                "server.failed_auth_per_minute",
                "must be at least 1",
            ));
        }
        let metrics_sources = [
            self.metrics.token_sha256.is_some(),
            self.metrics.token_env.is_some(),
            self.metrics.token_file.is_some(),
        ];
        if metrics_sources.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::key(
                "metrics",
                "set at most one of token_sha256, token_env, token_file",
            ));
        }
        if self.database.max_size_mb == Some(0) {
            return Err(ConfigError::key(
                "database.max_size_mb",
                "must be at least 1 (leave it out for no ceiling)",
            ));
        }
        let fanout = &self.fanout;
        if fanout.max_attempts == 0 {
            return Err(ConfigError::key(
                "fanout.max_attempts",
                "must be at least 1",
            ));
        }
        if fanout.backoff_base_ms == 0 || fanout.backoff_cap_ms < fanout.backoff_base_ms {
            return Err(ConfigError::key(
                "fanout.backoff_cap_ms",
                "must be at least fanout.backoff_base_ms, which must be above 0",
            ));
        }
        if fanout.dead_letter_after_hours == 0 {
            return Err(ConfigError::key(
                "fanout.dead_letter_after_hours",
                "must be at least 1",
            ));
        }
        if fanout.circuit_failures == 0 {
            return Err(ConfigError::key(
                "fanout.circuit_failures",
                "must be at least 1",
            ));
        }
        if fanout.poll_ms == 0 {
            return Err(ConfigError::key("fanout.poll_ms", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let settings = Settings::from_toml(EMBEDDED_DEFAULT, &Overrides::default()).unwrap();
        assert_eq!(settings.server.listen.port(), 8080);
        // The admin API has its own limit, not the identity providers' one.
        assert_eq!(settings.admin.requests_per_second, 100);
        assert_eq!(settings.scim.requests_per_second, 1000);
        assert!(settings.scim.dev_token.is_some());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[scim]\ndefault_page_size = 0", "scim.default_page_size"),
            ("[scim]\nmax_page_sise = 3", "max_page_sise"),
            ("[[scim.clients]]\nname = \"okta\"", "scim.clients[0]"),
            (
                "[fanout]\ndead_letter_after_hours = 0",
                "fanout.dead_letter_after_hours",
            ),
            ("[fanout]\ncircuit_failures = 0", "fanout.circuit_failures"),
            (
                "[admin]\nrequests_per_second = 0",
                "admin.requests_per_second",
            ),
        ];
        for (text, key) in cases {
            let err = Settings::from_toml(text, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn command_line_overrides_win() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            db: Some(PathBuf::from("/tmp/x.db")),
            log_format: Some(LogFormat::Json),
            no_sandbox: true,
        };
        let settings = Settings::from_toml(EMBEDDED_DEFAULT, &overrides).unwrap();
        assert_eq!(settings.server.listen.port(), 0);
        assert_eq!(settings.database.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(settings.server.log_format, LogFormat::Json);
        assert!(!settings.sandbox.start);
    }

    #[test]
    fn embedded_default_targets_are_the_sandbox_defaults() {
        let settings = Settings::from_toml(EMBEDDED_DEFAULT, &Overrides::default()).unwrap();
        assert!(settings.sandbox.start);
        assert_eq!(
            settings.target_names(),
            ["appgate", "kibo", "primavera", "vikingcloud"]
        );
        let shipped: toml::Table = toml::from_str(&crate::sandbox::default_targets_toml()).unwrap();
        let embedded: toml::Table = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(embedded.get("targets"), shipped.get("targets"));
    }
}
