//! Configuration of the outbound side: the `[targets.<name>]` tables of the bridge config,
//! checked and turned into ready adapters by `build_targets`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::appgate::{AppgateConfig, AppgateTarget};
use super::http::{Limits, Transport};
use super::kibo::{KiboConfig, KiboTarget};
use super::primavera::{PrimaveraConfig, PrimaveraTarget};
use super::vikingcloud::{VikingCloudConfig, VikingCloudTarget};
use super::{Target, TargetSchema};
use crate::clock::SharedClock;

/// Every `[targets.<name>]` table, by name. The name is what logs, the ledger and the
/// mapping files call the target.
pub type TargetsConfig = BTreeMap<String, TargetConfig>;

/// One `[targets.<name>]` table: the settings every target has, then its vendor's own keys
/// (chosen by `kind`).
#[derive(Debug, Deserialize)]
pub struct TargetConfig {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The API root the vendor's paths hang off (Appgate `.../admin`, Kibo `.../api`,
    /// Primavera `.../api/restapi`, VikingCloud the host in front of `/user-service`).
    pub base_url: String,
    /// For the whole exchange: connect, send and read the answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    #[serde(flatten)]
    pub vendor: VendorConfig,
}

fn enabled_by_default() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_concurrency() -> usize {
    4
}

fn default_rate_limit() -> u32 {
    10
}

/// The vendor-specific keys of a target table, tagged by its `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VendorConfig {
    Appgate(AppgateConfig),
    Vikingcloud(VikingCloudConfig),
    Kibo(KiboConfig),
    Primavera(PrimaveraConfig),
}

/// Which API a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Appgate,
    VikingCloud,
    Kibo,
    Primavera,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Appgate,
        TargetKind::VikingCloud,
        TargetKind::Kibo,
        TargetKind::Primavera,
    ];

    /// The `kind` value in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Appgate => "appgate",
            TargetKind::VikingCloud => "vikingcloud",
            TargetKind::Kibo => "kibo",
            TargetKind::Primavera => "primavera",
        }
    }

    /// The user schema of this kind's API, for checking mapping files without a target.
    pub fn schema(self) -> TargetSchema {
        match self {
            TargetKind::Appgate => super::appgate::payload::schema(),
            TargetKind::VikingCloud => super::vikingcloud::payload::schema(),
            TargetKind::Kibo => super::kibo::payload::schema(),
            TargetKind::Primavera => super::primavera::payload::schema(),
        }
    }
}

impl TargetConfig {
    pub fn kind(&self) -> TargetKind {
        match self.vendor {
            VendorConfig::Appgate(_) => TargetKind::Appgate,
            VendorConfig::Vikingcloud(_) => TargetKind::VikingCloud,
            VendorConfig::Kibo(_) => TargetKind::Kibo,
            VendorConfig::Primavera(_) => TargetKind::Primavera,
        }
    }
}

/// Where a secret comes from: `{ value = "..." }` (sandbox and tests only),
/// `{ env = "NAME" }` (falling back to a file named by `NAME_FILE`, the container-secrets
/// convention), or `{ file = "/run/secrets/..." }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretSource {
    Value(SecretString),
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret; `key` names the config key in the error (`targets.kibo.client_secret`).
    pub fn resolve(&self, key: &str) -> Result<SecretString, TargetConfigError> {
        self.resolve_with(key, &|name| std::env::var(name).ok())
    }

    fn resolve_with(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SecretString, TargetConfigError> {
        match self {
            SecretSource::Value(secret) => Ok(SecretString::from(secret.expose_secret())),
            SecretSource::Env(name) => {
                if let Some(value) = env(name) {
                    return Ok(SecretString::from(value));
                }
                let file_var = format!("{name}_FILE");
                match env(&file_var) {
                    Some(path) => read_secret_file(key, PathBuf::from(path)),
                    None => Err(TargetConfigError::MissingEnv {
                        key: key.to_owned(),
                        var: name.clone(),
                    }),
                }
            }
            SecretSource::File(path) => read_secret_file(key, path.clone()),
        }
    }
}

fn read_secret_file(key: &str, path: PathBuf) -> Result<SecretString, TargetConfigError> {
    match std::fs::read_to_string(&path) {
        // Secret files usually end with a newline the secret does not contain.
        Ok(text) => Ok(SecretString::from(text.trim_end_matches(['\r', '\n']))),
        Err(source) => Err(TargetConfigError::SecretFile {
            key: key.to_owned(),
            path,
            source,
        }),
    }
}

/// Why the targets could not be built. Each names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TargetConfigError {
    #[error("{key}: environment variable {var} is not set (nor {var}_FILE)")]
    MissingEnv { key: String, var: String },
    #[error("{key}: cannot read secret file {}: {source}", path.display())]
    SecretFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("targets.{name}: cannot build the HTTP client: {source}")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

impl TargetConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        TargetConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses a URL from the config, insisting on http(s) and a path that segments can be
/// appended to.
pub(crate) fn parse_url(key: &str, value: &str) -> Result<Url, TargetConfigError> {
    let url = Url::parse(value).map_err(|err| TargetConfigError::invalid(key, err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(TargetConfigError::invalid(key, "must be an http(s) URL"));
    }
    Ok(url)
}

/// What `build_targets` hands every vendor: the target's name, its checked base URL and a
/// transport already carrying its limits.
pub(crate) struct Built {
    pub name: String,
    pub base_url: Url,
    pub transport: Transport,
}

impl Built {
    /// The full config key of one of this target's settings, for error messages.
    pub fn key(&self, field: &str) -> String {
        format!("targets.{}.{field}", self.name)
    }
}

/// Builds an adapter for every enabled target. Secrets are read here, so a missing one
/// stops the start-up with the key that names it.
pub fn build_targets(
    cfg: &TargetsConfig,
    clock: SharedClock,
) -> Result<Vec<Arc<dyn Target>>, TargetConfigError> {
    cfg.iter()
        .filter(|(_, target)| target.enabled)
        .map(|(name, target)| build_target(name, target, clock.clone()))
        .collect()
}

fn build_target(
    name: &str,
    cfg: &TargetConfig,
    clock: SharedClock,
) -> Result<Arc<dyn Target>, TargetConfigError> {
    let key = |field: &str| format!("targets.{name}.{field}");
    let base_url = parse_url(&key("base_url"), &cfg.base_url)?;
    let positive = |field: &str, value: u64| {
        (value > 0)
            .then_some(value)
            .ok_or_else(|| TargetConfigError::invalid(key(field), "must be greater than 0"))
    };
    let limits = Limits {
        timeout: Duration::from_millis(positive("timeout_ms", cfg.timeout_ms)?),
        concurrency: positive("concurrency", cfg.concurrency as u64)? as usize,
        rate_per_second: NonZeroU32::new(cfg.rate_limit_per_second).ok_or_else(|| {
            TargetConfigError::invalid(key("rate_limit_per_second"), "must be greater than 0")
        })?,
        throttle_default: match cfg.vendor {
            VendorConfig::Primavera(_) => Some(super::primavera::THROTTLE_BACKOFF),
            VendorConfig::Appgate(_) | VendorConfig::Vikingcloud(_) | VendorConfig::Kibo(_) => None,
        },
    };
    let transport =
        Transport::new(name, limits, clock).map_err(|source| TargetConfigError::Client {
            name: name.to_owned(),
            source,
        })?;
    let built = Built {
        name: name.to_owned(),
        base_url,
        transport,
    };
    Ok(match &cfg.vendor {
        VendorConfig::Appgate(vendor) => Arc::new(AppgateTarget::build(built, vendor)?),
        VendorConfig::Vikingcloud(vendor) => Arc::new(VikingCloudTarget::build(built, vendor)?),
        VendorConfig::Kibo(vendor) => Arc::new(KiboTarget::build(built, vendor)?),
        VendorConfig::Primavera(vendor) => Arc::new(PrimaveraTarget::build(built, vendor)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        targets: TargetsConfig,
    }

    fn parse(text: &str) -> Result<TargetsConfig, toml::de::Error> {
        toml::from_str::<Wrapper>(text).map(|wrapper| wrapper.targets)
    }

    #[test]
    fn vendor_keys_follow_the_kind_and_typos_are_refused() {
        let cfg = parse(
            r#"
            [targets.appgate]
            kind = "appgate"
            base_url = "https://controller.example.com:8443/admin"
            username = "bridge"
            password = { env = "APPGATE_PASSWORD" }
            api_version = 18
            "#,
        )
        .unwrap();
        let target = &cfg["appgate"];
        assert_eq!(target.kind(), TargetKind::Appgate);
        assert!(target.enabled);
        assert_eq!(target.timeout_ms, 10_000);
        let VendorConfig::Appgate(appgate) = &target.vendor else {
            panic!("wrong vendor: {:?}", target.vendor)
        };
        assert_eq!(appgate.api_version, 18);

        let typo = parse(
            r#"
            [targets.appgate]
            kind = "appgate"
            base_url = "https://controller.example.com:8443/admin"
            username = "bridge"
            password = { env = "APPGATE_PASSWORD" }
            api_verison = 18
            "#,
        );
        assert!(typo.unwrap_err().to_string().contains("api_verison"));

        let unknown_kind = parse(
            r#"
            [targets.x]
            kind = "ldap"
            base_url = "https://x.example.com"
            "#,
        );
        assert!(unknown_kind.is_err());
    }

    #[test]
    fn secrets_come_from_env_then_env_file_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let file_path = path.display().to_string();
        let env = |name: &str| match name {
            "DIRECT" => Some("from-env".to_owned()),
            "VIA_FILE_FILE" => Some(file_path.clone()),
            _ => None,
        };
        let resolve = |source: SecretSource| {
            source
                .resolve_with("targets.t.password", &env)
                .map(|secret| secret.expose_secret().to_owned())
        };
        assert_eq!(
            resolve(SecretSource::Env("DIRECT".into())).unwrap(),
            "from-env"
        );
        assert_eq!(
            resolve(SecretSource::Env("VIA_FILE".into())).unwrap(),
            "from-file"
        );
        assert_eq!(
            resolve(SecretSource::File(path.clone())).unwrap(),
            "from-file"
        );
        assert_eq!(
            resolve(SecretSource::Env("ABSENT".into()))
                .unwrap_err()
                .to_string(),
            "targets.t.password: environment variable ABSENT is not set (nor ABSENT_FILE)"
        );
        let missing = resolve(SecretSource::File(dir.path().join("nope"))).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("targets.t.password: cannot read secret file"));
    }

    #[test]
    fn build_names_the_key_at_fault() {
        let cfg = parse(
            r#"
            [targets.kibo]
            kind = "kibo"
            base_url = "https://t1.sandbox.mozu.com/api"
            concurrency = 0
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            "#,
        )
        .unwrap();
        let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "targets.kibo.concurrency: must be greater than 0"
        );

        let cfg = parse(
            r#"
            [targets.kibo]
            kind = "kibo"
            base_url = "mailto:ops@example.com"
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            "#,
        )
        .unwrap();
        let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "targets.kibo.base_url: must be an http(s) URL"
        );
    }

    #[test]
    fn disabled_targets_are_not_built() {
        let cfg = parse(
            r#"
            [targets.kibo]
            kind = "kibo"
            enabled = false
            base_url = "https://t1.sandbox.mozu.com/api"
            client_id = "app"
            client_secret = { env = "SURELY_NOT_SET_ANYWHERE_42" }
            tenant_id = "1"
            site_id = "2"
            "#,
        )
        .unwrap();
        assert!(build_targets(&cfg, Arc::new(SystemClock))
            .unwrap()
            .is_empty());
    }
}
