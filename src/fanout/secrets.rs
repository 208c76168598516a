//! Passwords at rest: sealed with ChaCha20-Poly1305 until every target that maps them has
//! them, then erased. The user id is bound in as associated data, so a sealed password
//! cannot be moved to another user's row.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use secrecy::{ExposeSecret, SecretString};

use crate::ledger::SealedSecret;

/// Environment variable holding the base64 key; wins over the key file.
pub(crate) const KEY_ENV: &str = "SCIM_BRIDGE_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("{KEY_ENV} must be 32 bytes encoded in base64")]
    BadEnvKey,
    #[error("the key file {path} must hold 32 bytes encoded in base64")]
    BadKeyFile { path: String },
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a sealed password could not be opened (wrong key or damaged row)")]
    Open,
}

pub(crate) struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub(crate) fn from_key(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// The key from `SCIM_BRIDGE_SECRET_KEY`, else from `key_file`, creating that file with a
    /// fresh key on first run (with a warning: production keeps its key elsewhere).
    pub(crate) fn load(env_key: Option<&str>, key_file: &Path) -> Result<SecretBox, SecretError> {
        if let Some(encoded) = env_key {
            return decode_key(encoded)
                .map(|k| SecretBox::from_key(&k))
                .ok_or(SecretError::BadEnvKey);
        }
        let path = key_file.display().to_string();
        match std::fs::read_to_string(key_file) {
            Ok(text) => decode_key(&text)
                .map(|k| SecretBox::from_key(&k))
                .ok_or(SecretError::BadKeyFile { path }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = ChaCha20Poly1305::generate_key(&mut OsRng).into();
                write_key_file(key_file, &BASE64.encode(key)).map_err(|source| {
                    SecretError::KeyFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                tracing::warn!(
                    path = %path,
                    "created a new key for passwords at rest; back it up, or set {KEY_ENV} in production"
                );
                Ok(SecretBox::from_key(&key))
            }
            Err(source) => Err(SecretError::KeyFile { path, source }),
        }
    }

    pub(crate) fn seal(&self, user_id: &str, password: &SecretString) -> SealedSecret {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: password.expose_secret().as_bytes(),
            aad: user_id.as_bytes(),
        };
        // Encryption with a fresh nonce and an in-memory buffer cannot fail for inputs of
        // this size; an empty ciphertext would only fail to open later, never leak.
        let ciphertext = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        SealedSecret {
            secret_id: uuid::Uuid::new_v4().to_string(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// `seal` for a password the bridge made up for a create on `target`: its id says so
    /// (`made-up:<target>:<uuid>`), so it is only ever sent to the account that create made.
    pub(crate) fn seal_made_up(
        &self,
        user_id: &str,
        password: &SecretString,
        target: &str,
    ) -> SealedSecret {
        let mut sealed = self.seal(user_id, password);
        sealed.secret_id = format!("{MADE_UP}{target}:{}", sealed.secret_id);
        sealed
    }

    pub(crate) fn open(
        &self,
        user_id: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, SecretError> {
        if sealed.nonce.len() != 12 {
            return Err(SecretError::Open);
        }
        let payload = Payload {
            msg: &sealed.ciphertext,
            aad: user_id.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), payload)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| SecretError::Open)
    }
}

/// Starts the id of a sealed password the bridge made up (see `seal_made_up`).
const MADE_UP: &str = "made-up:";

/// The target a sealed password was made up for, from its id; `None` for the identity
/// provider's.
pub(crate) fn made_up_for(secret_id: &str) -> Option<&str> {
    let rest = secret_id.strip_prefix(MADE_UP)?;
    rest.rsplit_once(':').map(|(target, _)| target)
}

/// A password for a target that cannot create an account without one when the identity
/// provider sent none: 24 characters from every class password policies ask for, from the
/// OS-seeded RNG. Its users sign in through SSO or after an admin reset.
pub(crate) fn random_password() -> SecretString {
    use rand::seq::SliceRandom;
    use rand::Rng;
    const CLASSES: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@_",
    ];
    let mut rng = rand::thread_rng();
    let mut chars: Vec<u8> = CLASSES
        .iter()
        .flat_map(|class| {
            (0..6)
                .map(|_| class[rng.gen_range(0..class.len())])
                .collect::<Vec<_>>()
        })
        .collect();
    chars.shuffle(&mut rng);
    SecretString::from(String::from_utf8_lossy(&chars).into_owned())
}

fn decode_key(encoded: &str) -> Option<[u8; 32]> {
    BASE64.decode(encoded.trim()).ok()?.try_into().ok()
}

fn write_key_file(path: &Path, encoded: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(path)?.write_all(encoded.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_bound_to_the_user() {
        let sb = SecretBox::from_key(&[7; 32]);
        let sealed = sb.seal("user-1", &SecretString::from("Pa55word!".to_owned()));
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("Pa55word"));
        let opened = sb.open("user-1", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "Pa55word!");
        assert!(sb.open("user-2", &sealed).is_err(), "bound to its user");
        assert!(SecretBox::from_key(&[8; 32])
            .open("user-1", &sealed)
            .is_err());
    }

    #[test]
    fn a_made_up_password_names_its_target() {
        let sb = SecretBox::from_key(&[7; 32]);
        let password = SecretString::from("x".to_owned());
        let sealed = sb.seal_made_up("u", &password, "kibo:eu");
        assert_eq!(made_up_for(&sealed.secret_id), Some("kibo:eu"));
        assert_eq!(made_up_for(&sb.seal("u", &password).secret_id), None);
        assert_eq!(sb.open("u", &sealed).unwrap().expose_secret(), "x");
    }

    #[test]
    fn random_passwords_mix_every_class_and_differ() {
        let a = random_password();
        let a = a.expose_secret();
        assert_eq!(a.len(), 24);
        assert_ne!(a, random_password().expose_secret());
        assert!(a.chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()));
        assert!(a.chars().any(|c| !c.is_ascii_alphanumeric()));
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let first = SecretBox::load(None, &path).unwrap();
        let sealed = first.seal("u", &SecretString::from("x".to_owned()));
        let second = SecretBox::load(None, &path).unwrap();
        assert_eq!(second.open("u", &sealed).unwrap().expose_secret(), "x");
        assert!(matches!(
            SecretBox::load(Some("short"), &path),
            Err(SecretError::BadEnvKey)
        ));
    }
}
