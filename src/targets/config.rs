//! Configuration of the outbound side: the `[targets.<name>]` tables of the bridge config,
//! checked and turned into ready adapters by `build_targets`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::http::{Limits, Transport};
pub(crate) use super::vendor::FirstDelivery;
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
    /// Deliveries in flight at once: where an adaptive limit starts, or the fixed limit.
    pub concurrency: usize,
    /// The most deliveries in flight an adaptive limit may reach.
    pub max_concurrency: usize,
    /// Whether the limit moves between 1 and `max_concurrency` with the target's answers.
    pub adaptive_concurrency: bool,
    pub rate_limit_per_second: u32,
    /// `[targets.<name>.guard]`: the deprovisioning guard.
    pub guard: GuardConfig,
    /// Create first and adopt on 409, or look the natural key up first (alone, or in a
    /// listing of the target's accounts when many wait).
    pub first_delivery: FirstDelivery,
    /// `[targets.<name>.list_first]`: when a listing is the look-up (`list_first`).
    pub list_first: ListFirstConfig,
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
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default = "adaptive_by_default")]
    adaptive_concurrency: bool,
    #[serde(default = "default_rate_limit")]
    rate_limit_per_second: u32,
    #[serde(default)]
    guard: GuardConfig,
    first_delivery: Option<FirstDelivery>,
    #[serde(default)]
    list_first: ListFirstConfig,
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
            // A table that raised `concurrency` past the default cap keeps its own figure as
            // the cap, so no existing setting lowers the pace.
            max_concurrency: table
                .max_concurrency
                .unwrap_or(DEFAULT_MAX_CONCURRENCY.max(table.concurrency)),
            adaptive_concurrency: table.adaptive_concurrency,
            rate_limit_per_second: table.rate_limit_per_second,
            guard: table.guard,
            first_delivery: table.first_delivery.unwrap_or(vendor.first_delivery),
            list_first: table.list_first,
            reconcile: table.reconcile,
            vendor,
            keys,
        })
    }
}

/// `[targets.<name>.guard]`: how many disables and deletes may reach a target within a
/// window before the rest are held for an operator. A mistake upstream (a scoping change in
/// the identity provider, an unassigned group) deprovisions in bulk; the guard stops it at a
/// count, or at a share of the accounts the bridge holds there, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub enabled: bool,
    /// Deprovisions sent within `window_secs` before the rest are held. 500 is Entra ID's
    /// own accidental-deletion threshold.
    pub max_deprovisions: u32,
    pub window_secs: u64,
    /// Deprovisions within the window, as a percentage of the accounts the bridge holds on
    /// the target, before the rest are held.
    pub max_percent: u32,
    /// The fewest deprovisions `max_percent` ever holds at: a fifth of a 30-user target
    /// is 6, and holding an ordinary week of leavers would teach operators to switch the
    /// guard off.
    pub percent_floor: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            max_deprovisions: 500,
            window_secs: 3600,
            max_percent: 20,
            percent_floor: 20,
        }
    }
}

impl GuardConfig {
    fn check(&self, key: impl Fn(&str) -> String) -> Result<(), TargetConfigError> {
        let at_least_one = |field: &str, value: u64| {
            (value >= 1)
                .then_some(())
                .ok_or_else(|| TargetConfigError::invalid(key(field), "must be at least 1"))
        };
        at_least_one("guard.max_deprovisions", self.max_deprovisions.into())?;
        at_least_one("guard.window_secs", self.window_secs)?;
        at_least_one("guard.percent_floor", self.percent_floor.into())?;
        if !(1..=100).contains(&self.max_percent) {
            return Err(TargetConfigError::invalid(
                key("guard.max_percent"),
                "must be between 1 and 100",
            ));
        }
        Ok(())
    }
}

/// `[targets.<name>.list_first]`: when a target set to `first_delivery = "list_first"` reads
/// all its accounts once to look many new ones up, rather than one look-up request each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListFirstConfig {
    /// The fewest first deliveries waiting that make a listing worth its requests. A
    /// listing is also never read for fewer than twice the pages it takes.
    pub min_users: u32,
    /// How long a listing stands for the target's accounts. An account made elsewhere
    /// after the listing was read is not in it, so for this long a vendor that accepts a
    /// second account with the same key could get one; after it, the next burst of new
    /// users reads the accounts again.
    pub max_age_secs: u64,
}

impl Default for ListFirstConfig {
    fn default() -> Self {
        ListFirstConfig {
            min_users: 50,
            max_age_secs: 300,
        }
    }
}

impl ListFirstConfig {
    fn check(&self, key: impl Fn(&str) -> String) -> Result<(), TargetConfigError> {
        for (field, value) in [
            ("list_first.min_users", u64::from(self.min_users)),
            ("list_first.max_age_secs", self.max_age_secs),
        ] {
            if value == 0 {
                return Err(TargetConfigError::invalid(key(field), "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl TargetConfig {
    /// Which vendor's API the target speaks.
    pub fn kind(&self) -> &'static Vendor {
        self.vendor
    }

    /// The most deliveries (and requests) ever in flight at once.
    pub(crate) fn concurrency_cap(&self) -> usize {
        if self.adaptive_concurrency {
            self.max_concurrency
        } else {
            self.concurrency
        }
    }
}

/// The cap of an adaptive limit when the table names none: enough to fill a budget of 20
/// requests per second against a vendor answering in 1.5 s.
const DEFAULT_MAX_CONCURRENCY: usize = 32;

fn adaptive_by_default() -> bool {
    true
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
    cfg.guard.check(key)?;
    cfg.list_first.check(key)?;
    let positive = |field: &str, value: u64| {
        (value > 0)
            .then_some(value)
            .ok_or_else(|| TargetConfigError::invalid(key(field), "must be greater than 0"))
    };
    let concurrency = positive("concurrency", cfg.concurrency as u64)? as usize;
    if cfg.adaptive_concurrency && cfg.max_concurrency < concurrency {
        return Err(TargetConfigError::invalid(
            key("max_concurrency"),
            format!("must be at least `concurrency` ({concurrency}), where the limit starts"),
        ));
    }
    let limits = Limits {
        timeout: Duration::from_millis(positive("timeout_ms", cfg.timeout_ms)?),
        concurrency: cfg.concurrency_cap(),
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
    let target = cfg.keys.build(built)?;
    if cfg.first_delivery == FirstDelivery::ListFirst && target.listing_page_size().is_none() {
        return Err(TargetConfigError::invalid(
            key("first_delivery"),
            format!(
                "\"list_first\" needs a target that lists all its accounts and looks one up \
                 by a single key, and {} does not: use \"find_first\" or \"create_first\"",
                cfg.vendor.kind
            ),
        ));
    }
    Ok(target)
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

    const KIBO: &str = r#"
            [targets.kibo]
            kind = "kibo"
            base_url = "https://t1.sandbox.mozu.com/api"
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            "#;

    #[test]
    fn the_guard_has_defaults_takes_the_environment_and_names_a_bad_key() {
        assert_eq!(parse(KIBO).unwrap()["kibo"].guard, GuardConfig::default());

        // The same provider `Settings::load` uses, under a prefix no other test reads.
        std::env::set_var(
            "GUARD_CONFIG_TEST__TARGETS__KIBO__GUARD__MAX_DEPROVISIONS",
            "10",
        );
        std::env::set_var("GUARD_CONFIG_TEST__TARGETS__KIBO__GUARD__ENABLED", "false");
        let cfg: TargetsConfig = figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(KIBO))
            .merge(figment::providers::Env::prefixed("GUARD_CONFIG_TEST__").split("__"))
            .extract::<Wrapper>()
            .unwrap()
            .targets;
        assert_eq!(cfg["kibo"].guard.max_deprovisions, 10);
        assert_eq!(cfg["kibo"].guard.window_secs, 3600);
        assert!(!cfg["kibo"].guard.enabled);

        for (line, message) in [
            (
                "max_percent = 0",
                "targets.kibo.guard.max_percent: must be between 1 and 100",
            ),
            (
                "max_percent = 101",
                "targets.kibo.guard.max_percent: must be between 1 and 100",
            ),
            (
                "window_secs = 0",
                "targets.kibo.guard.window_secs: must be at least 1",
            ),
            (
                "max_deprovisions = 0",
                "targets.kibo.guard.max_deprovisions: must be at least 1",
            ),
        ] {
            let cfg = parse(&format!("{KIBO}\n[targets.kibo.guard]\n{line}\n")).unwrap();
            let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
            assert_eq!(err.to_string(), message);
        }
        let typo = parse(&format!("{KIBO}\n[targets.kibo.guard]\nmax_percnt = 5\n"));
        assert!(typo.unwrap_err().to_string().contains("max_percnt"));
    }

    #[test]
    fn list_first_has_defaults_names_a_bad_key_and_is_refused_where_it_cannot_work() {
        let kibo = &parse(KIBO).unwrap()["kibo"];
        assert_eq!(kibo.first_delivery, FirstDelivery::ListFirst);
        assert_eq!(kibo.list_first, ListFirstConfig::default());
        let cfg = parse(&format!(
            "{KIBO}\n[targets.kibo.list_first]\nmin_users = 500\nmax_age_secs = 60\n"
        ))
        .unwrap();
        assert_eq!(
            cfg["kibo"].list_first,
            ListFirstConfig {
                min_users: 500,
                max_age_secs: 60
            }
        );
        let cfg = parse(&format!(
            "{KIBO}\n[targets.kibo.list_first]\nmax_age_secs = 0\n"
        ))
        .unwrap();
        let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "targets.kibo.list_first.max_age_secs: must be at least 1"
        );
        let typo = parse(&format!(
            "{KIBO}\n[targets.kibo.list_first]\nmin_user = 5\n"
        ));
        assert!(typo.unwrap_err().to_string().contains("min_user"));

        // VikingCloud has no call that lists its users.
        let cfg = parse(
            r#"
            [targets.vikingcloud]
            kind = "vikingcloud"
            base_url = "https://users.vikingcloud.example"
            username = "scim-bridge"
            password = { value = "p" }
            first_delivery = "list_first"
            "#,
        )
        .unwrap();
        let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("targets.vikingcloud.first_delivery: \"list_first\" needs"),
            "{err}"
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

    #[test]
    fn first_delivery_and_the_concurrency_cap_default_per_vendor_and_can_be_set() {
        let cfg = parse(
            r#"
            [targets.appgate]
            kind = "appgate"
            base_url = "https://controller.example.com:8443/admin"
            username = "bridge"
            password = { value = "p" }

            [targets.kibo]
            kind = "kibo"
            base_url = "https://t1.sandbox.mozu.com/api"
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            first_delivery = "create_first"
            concurrency = 48
            "#,
        )
        .unwrap();
        let appgate = &cfg["appgate"];
        assert_eq!(appgate.first_delivery, FirstDelivery::CreateFirst);
        assert_eq!((appgate.concurrency, appgate.concurrency_cap()), (4, 32));
        assert!(appgate.adaptive_concurrency);
        let kibo = &cfg["kibo"];
        assert_eq!(kibo.first_delivery, FirstDelivery::CreateFirst);
        // A start above the default cap raises the cap with it.
        assert_eq!(kibo.concurrency_cap(), 48);
        assert_eq!(
            crate::targets::kibo::VENDOR.first_delivery,
            FirstDelivery::ListFirst
        );

        let wrong = parse(
            r#"
            [targets.kibo]
            kind = "kibo"
            base_url = "https://t1.sandbox.mozu.com/api"
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            first_delivery = "guess"
            "#,
        );
        let message = wrong.unwrap_err().to_string();
        assert!(message.contains("create_first"), "{message}");

        let cfg = parse(
            r#"
            [targets.kibo]
            kind = "kibo"
            base_url = "https://t1.sandbox.mozu.com/api"
            client_id = "app"
            client_secret = { value = "s" }
            tenant_id = "1"
            site_id = "2"
            concurrency = 8
            max_concurrency = 4
            "#,
        )
        .unwrap();
        let err = build_targets(&cfg, Arc::new(SystemClock)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "targets.kibo.max_concurrency: must be at least `concurrency` (8), where the limit \
             starts"
        );
    }
}
