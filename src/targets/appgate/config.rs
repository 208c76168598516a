//! Settings of the Appgate SDP adapter: the keys of a `kind = "appgate"` target table.

use serde::Deserialize;

use crate::targets::vendor::SecretSource;

/// The Admin API version sent in `Accept: application/vnd.appgate.peer-v<N>+json`.
/// Controllers accept a window of versions (v16 to v23 exist); 20 sits inside the windows of
/// current releases.
pub(crate) const DEFAULT_API_VERSION: u32 = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppgateConfig {
    /// The admin the bridge logs in as.
    pub username: String,
    pub password: SecretSource,
    /// The identity provider of that admin.
    #[serde(default = "default_provider_name")]
    pub provider_name: String,
    /// The uuid the bridge presents as its device at login; a fresh one per start when absent.
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default = "default_api_version")]
    pub api_version: u32,
    /// Whether the controller holds `Ana@Example.com` and `ana@example.com` as one name, so
    /// an account found with the name in another case is adopted. The Admin API reference
    /// does not say; controllers refuse the second spelling with a 409, so this is on by
    /// default. Off, only the exact name is adopted.
    #[serde(default = "default_name_ignores_case")]
    pub name_ignores_case: bool,
    /// The tag the bridge puts on every user it creates or updates, so a reconcile can tell
    /// its own accounts from those made by hand. The shipped mapping sets the same tag; the
    /// adapter adds it to every body too, so a mapping without it still marks its accounts.
    /// Empty: no tag is added, and no account counts as the bridge's.
    #[serde(default = "default_mark_tag")]
    pub mark_tag: String,
}

fn default_mark_tag() -> String {
    "scim-bridge".to_owned()
}

fn default_name_ignores_case() -> bool {
    true
}

fn default_provider_name() -> String {
    "local".to_owned()
}

fn default_api_version() -> u32 {
    DEFAULT_API_VERSION
}
