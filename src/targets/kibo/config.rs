//! Settings of the Kibo Commerce adapter: the keys of a `kind = "kibo"` target table.

use serde::Deserialize;

use crate::targets::vendor::{FirstDelivery, SecretSource};

/// Kibo lists 409 among its answers but does not say which fields it keeps unique, so a first
/// delivery looks the email address up before it creates: alone, or in one listing of the
/// accounts when many wait.
pub(crate) const FIRST_DELIVERY: FirstDelivery = FirstDelivery::ListFirst;

/// Kibo issues application tokens from its home host, apart from the tenant's API host.
pub(crate) const DEFAULT_AUTH_URL: &str =
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
    /// Kibo's reference lists the password among the properties a PUT requires. An account
    /// whose password the bridge does not know (one it adopted, the identity provider sending
    /// none) then cannot be updated without resetting it, so such updates are held with a
    /// finding. A tenant that keeps the old password when a PUT leaves it out can say so
    /// here (`false`), and those accounts are updated without a password.
    #[serde(default = "default_password_required_on_update")]
    pub password_required_on_update: bool,
    /// The account field whose value marks an account as the bridge's, so a reconcile can
    /// tell its own accounts from those made by hand. Kibo accounts have no notes; the
    /// shipped mapping fills `externalId` with the identity provider's id, which accounts
    /// made in Kibo's console do not carry. An account of the bridge's whose user has no
    /// external id counts as made by hand, and a reconcile never touches those.
    #[serde(default = "default_mark_field")]
    pub mark_field: String,
}

fn default_mark_field() -> String {
    "externalId".to_owned()
}

fn default_password_required_on_update() -> bool {
    true
}

fn default_auth_url() -> String {
    DEFAULT_AUTH_URL.to_owned()
}
