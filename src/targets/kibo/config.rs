//! Settings of the Kibo Commerce adapter: the keys of a `kind = "kibo"` target table.

use serde::Deserialize;

use crate::targets::config::SecretSource;

/// Kibo issues application tokens from its home host, apart from the tenant's API host.
pub const DEFAULT_AUTH_URL: &str =
    "https://home.mozu.com/api/platform/applications/authtickets/oauth";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiboConfig {
    /// The OAuth client-credentials endpoint.
    #[serde(default = "default_auth_url")]
    pub auth_url: String,
    /// The application key.
    pub client_id: String,
    pub client_secret: SecretSource,
    /// Sent as `x-vol-tenant` on every call.
    pub tenant_id: String,
    /// Sent as `x-vol-site`: Kibo takes the site of an admin user from this header.
    pub site_id: String,
}

fn default_auth_url() -> String {
    DEFAULT_AUTH_URL.to_owned()
}
