//! Below the vendors: what every vendor folder uses to read its keys and build its adapter
//! (secrets, URLs, the errors naming the key at fault), so no vendor depends on
//! `targets/config.rs`, which builds adapters from the vendors.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::http::Transport;
use super::{FieldKind, Target, TargetSchema};

/// One vendor's entry point: all the rest of the bridge knows of it. The table of them is
/// `targets::VENDORS`; everything that differs by vendor goes through it.
pub struct Vendor {
    /// The `kind` of its target tables, the name of its mapping file, and the key of its
    /// emulator in the sandbox (`sandbox::EMULATORS`, `targets.toml`).
    pub kind: &'static str,
    /// Its declared user schema, for checking mapping files without a built target.
    pub schema: fn() -> TargetSchema,
    /// Reads its own keys of a target table (unknown keys refused).
    pub(crate) keys: fn(toml::Table) -> Result<Box<dyn VendorKeys>, toml::de::Error>,
    /// The wait after a 429 without `Retry-After`, for vendors that document one.
    pub(crate) throttle_default: Option<Duration>,
    /// How a first delivery starts when the target's table does not say.
    pub(crate) first_delivery: FirstDelivery,
}

/// How a first delivery (no account linked yet) reaches the account: the `first_delivery`
/// key of a target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstDelivery {
    /// Create at once, one request per new account; the 409 the vendor answers when the
    /// natural key is taken leads to the look-up and the adoption. Only for vendors that
    /// refuse a duplicate natural key, or a create would make a second account.
    CreateFirst,
    /// Look the natural key up, then create or adopt: two requests per new account, and no
    /// duplicate even where the vendor does not enforce the key.
    FindFirst,
    /// As `FindFirst`, except when many first deliveries wait at once (an initial load):
    /// then one listing of all the target's accounts is their look-up, and each account the
    /// listing lacks is created at once, one request per new account. The listing is
    /// trusted for a bounded time only (`[targets.<name>.list_first]`), since an account
    /// made elsewhere after it was read is not in it.
    ListFirst,
}

impl PartialEq for Vendor {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Vendor {}

impl fmt::Debug for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind)
    }
}

/// A vendor's own keys of one target table, which build its adapter. `Any` lets a test
/// adjust one vendor's keys after the config is read.
pub trait VendorKeys: fmt::Debug + Send + Sync + Any {
    fn build(&self, built: Built) -> Result<Arc<dyn Target>, TargetConfigError>;
}

/// `Vendor::keys` for a vendor whose keys deserialize into `K`.
pub(crate) fn keys<K>(table: toml::Table) -> Result<Box<dyn VendorKeys>, toml::de::Error>
where
    K: VendorKeys + DeserializeOwned,
{
    Ok(Box::new(toml::Value::Table(table).try_into::<K>()?))
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
    pub(crate) fn resolve(&self, key: &str) -> Result<SecretString, TargetConfigError> {
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

/// The setting `key` naming the field a vendor's mark is read from: a text field the
/// target returns, since a mark nobody can read back marks nothing.
pub(crate) fn mark_field(
    schema: &TargetSchema,
    key: &str,
    name: &str,
) -> Result<String, TargetConfigError> {
    match schema.field(name) {
        Some(spec) if spec.kind == FieldKind::String && !spec.write_only => Ok(name.to_owned()),
        _ => Err(TargetConfigError::invalid(
            key,
            format!("`{name}` is not a text field this target returns"),
        )),
    }
}

/// What `build_targets` hands every vendor: the target's name, its checked base URL and a
/// transport already carrying its limits.
pub struct Built {
    pub name: String,
    pub base_url: Url,
    pub transport: Transport,
}

impl Built {
    /// The full config key of one of this target's settings, for error messages.
    pub(crate) fn key(&self, field: &str) -> String {
        format!("targets.{}.{field}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
