//! Settings of the Oracle Primavera Cloud adapter: the keys of a `kind = "primavera"` target
//! table. How users are filtered is not in the public docs, so it is a setting whose default
//! follows the API's documented `filters` header convention.

use serde::Deserialize;

use crate::targets::vendor::{FirstDelivery, SecretSource};

/// Primavera names `userId` and `ldapGuid` as what identifies a user, not the email address
/// the bridge matches on, and its create call is unconfirmed: a first delivery looks the
/// address up before it creates: alone, or in one listing of the users when many wait.
pub(crate) const FIRST_DELIVERY: FirstDelivery = FirstDelivery::ListFirst;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrimaveraConfig {
    /// The email address of the integration user (Basic auth on the token request).
    pub username: String,
    pub password: SecretSource,
    /// The token request, scope included. When absent it is derived from `base_url`:
    /// `https://<server>/primediscovery/apitoken/request?scope=http://<server>/api`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Sent as `x-prime-tenant-code`; when absent, the code the token request answers with.
    #[serde(default)]
    pub tenant_code: Option<String>,
    /// Sent as the `Version` header (the latest is 3); none sent when absent.
    #[serde(default)]
    pub api_version: Option<u32>,
    /// The header that filters `GET /user`, sent as `email=<address>`.
    #[serde(default = "default_filter_header")]
    pub filter_header: String,
    /// Where every user is listed, below `base_url`, paged with `offset` and `limit` as the
    /// API pages its other lists. The user service's list call is not in the public docs.
    #[serde(default = "default_list_path")]
    pub list_path: String,
    /// Users asked for per page when listing them all.
    #[serde(default = "default_list_page_size")]
    pub list_page_size: usize,
    /// The user field whose value marks a user as the bridge's, so a reconcile can tell its
    /// own users from those made by hand. The shipped mapping fills `ldapGuid` with the
    /// identity provider's id. Where Primavera's own identity service fills `ldapGuid` for
    /// users made by hand too, name another field the mapping fills, or keep the orphan
    /// policy at "report".
    #[serde(default = "default_mark_field")]
    pub mark_field: String,
}

fn default_list_path() -> String {
    "/user".to_owned()
}

fn default_list_page_size() -> usize {
    100
}

fn default_mark_field() -> String {
    "ldapGuid".to_owned()
}

fn default_filter_header() -> String {
    "filters".to_owned()
}
