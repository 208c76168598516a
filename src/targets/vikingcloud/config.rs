//! Settings of the VikingCloud user-service adapter: the keys of a `kind = "vikingcloud"`
//! target table. The login and the create and delete paths are not in the public docs, so
//! they are settings; the defaults follow the service's documented conventions and are what
//! the sandbox emulator serves.

use serde::Deserialize;

use crate::targets::vendor::SecretSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VikingCloudConfig {
    /// The service account the bridge logs in as.
    pub username: String,
    pub password: SecretSource,
    /// Put in `userKey.authenticator` when a payload names none.
    #[serde(default = "default_authenticator")]
    pub authenticator: String,
    /// `POST` here with `{username, password}`; answers `{access_token, id_token, expires_in}`.
    #[serde(default = "default_login_path")]
    pub login_path: String,
    /// Carries the access token (one doc sample uses `x-auth-token`).
    #[serde(default = "default_access_token_header")]
    pub access_token_header: String,
    /// Carries the id token; on `authorization` it is sent as `Bearer <id token>`.
    #[serde(default = "default_id_token_header")]
    pub id_token_header: String,
    /// Paths may hold `{authenticator}` and `{username}`, each filled in as one path segment.
    #[serde(default = "default_lookup_path")]
    pub lookup_path: String,
    #[serde(default = "default_update_path")]
    pub update_path: String,
    #[serde(default = "default_create_path")]
    pub create_path: String,
    #[serde(default = "default_delete_path")]
    pub delete_path: String,
    /// The text the bridge writes in `notes` when it creates a user whose mapping sets no
    /// notes, and looks for to tell its own users from those made by hand. Empty: nothing
    /// is written, and no user counts as the bridge's.
    #[serde(default = "default_mark_note")]
    pub mark_note: String,
}

fn default_mark_note() -> String {
    "Provisioned by scim-bridge.".to_owned()
}

fn default_authenticator() -> String {
    "local".to_owned()
}

fn default_login_path() -> String {
    "/user-service/v1/login".to_owned()
}

fn default_access_token_header() -> String {
    "x-jwt-assertion".to_owned()
}

fn default_id_token_header() -> String {
    "authorization".to_owned()
}

fn default_lookup_path() -> String {
    "/user-service/internal/user/{authenticator}/{username}".to_owned()
}

fn default_update_path() -> String {
    "/user-service/v1/user".to_owned()
}

fn default_create_path() -> String {
    "/user-service/v1/user/create".to_owned()
}

fn default_delete_path() -> String {
    "/user-service/v1/user/{authenticator}/{username}".to_owned()
}
