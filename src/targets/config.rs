//! Configuration of the outbound side: the `[targets.<name>]` tables of the bridge config,
//! checked and turned into ready adapters by `build_targets`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::http::{Limits, Transport};
pub(crate) use super::vendor::TargetConfigError;
use super::vendor::{parse_url, Built, Vendor, VendorKeys};
use super::{Target, VENDORS};
use crate::clock::SharedClock;
use crate::reconcile::policy::Policy;

/// Every `[targets.<name>]` table, by name. The name is what logs, the ledger and the
/// mapping files call the target.
pub(crate) type TargetsConfig = BTreeMap<String, TargetConfig>;

/// One `[targets.<name>]` table: the settings every target has, then its vendor's own keys
/// (the vendor chosen by `kind`).
#[derive(Debug)]
pub struct TargetConfig {
    pub enabled: bool,
    /// The API root the vendor's paths hang off (Appgate `.../admin`, Kibo `.../api`,
    /// Primavera `.../api/restapi`, VikingCloud the host in front of `/user-service`).
    pub base_url: String,
    /// For the whole exchange: connect, send and read the answer.
    pub timeout_ms: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub rate_limit_per_second: u32,
    /// What a reconcile does with each finding on this target.
    pub reconcile: Policy,
    pub vendor: &'static Vendor,
    pub keys: Box<dyn VendorKeys>,
}

/// A target table as written, before its `kind` picks the vendor that reads the rest.
#[derive(Deserialize)]
struct TargetTable {
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    base_url: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_rate_limit")]
    rate_limit_per_second: u32,
    #[serde(default)]
    reconcile: Policy,
    kind: String,
    #[serde(flatten)]
    keys: toml::Table,
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = TargetTable::deserialize(deserializer)?;
        let vendor = super::vendor(&table.kind).ok_or_else(|| {
            let kinds: Vec<String> = VENDORS
                .iter()
                .map(|vendor| format!("`{}`", vendor.kind))
                .collect();
            D::Error::custom(format!(
                "unknown variant `{}`, expected one of {}",
                table.kind,
                kinds.join(", ")
            ))
        })?;
        let keys = (vendor.keys)(table.keys).map_err(|err| D::Error::custom(err.message()))?;
        Ok(TargetConfig {
            enabled: table.enabled,
            base_url: table.base_url,
            timeout_ms: table.timeout_ms,
            concurrency: table.concurrency,
            rate_limit_per_second: table.rate_limit_per_second,
            reconcile: table.reconcile,
            vendor,
            keys,
        })
    }
}

impl TargetConfig {
    /// Which vendor's API the target speaks.
    pub fn kind(&self) -> &'static Vendor {
        self.vendor
    }
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
        throttle_default: cfg.vendor.throttle_default,
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
    cfg.keys.build(built)
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
        assert_eq!(target.kind(), &crate::targets::appgate::VENDOR);
        assert!(target.enabled);
        assert_eq!(target.timeout_ms, 10_000);
        let keys: &dyn std::any::Any = target.keys.as_ref();
        let appgate = keys
            .downcast_ref::<crate::targets::appgate::AppgateConfig>()
            .unwrap();
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
        assert!(unknown_kind.unwrap_err().to_string().contains(
            "unknown variant `ldap`, expected one of `appgate`, `vikingcloud`, `kibo`, `primavera`"
        ));
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
    fn the_reconcile_policy_is_a_table_of_the_target_and_defaults_when_absent() {
        let text = |policy: &str| {
            format!(
                r#"
                [targets.kibo]
                kind = "kibo"
                base_url = "https://t1.sandbox.mozu.com/api"
                client_id = "app"
                client_secret = {{ value = "s" }}
                tenant_id = "1"
                site_id = "2"
                {policy}
                "#
            )
        };
        let cfg = parse(&text("")).unwrap();
        assert_eq!(cfg["kibo"].reconcile, Policy::default());
        let cfg = parse(&text("[targets.kibo.reconcile]\non_drift = \"repair\"")).unwrap();
        assert_eq!(
            cfg["kibo"].reconcile.on_drift,
            crate::reconcile::policy::OnDrift::Repair
        );
        let err = parse(&text("[targets.kibo.reconcile]\non_orphan = \"burn\"")).unwrap_err();
        assert!(err.to_string().contains("burn"), "{err}");
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
