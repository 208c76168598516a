//! VikingCloud user-service: the adapter the fan-out worker drives for
//! `kind = "vikingcloud"`. A user is named by its `userKey` (authenticator and username),
//! which is also the id the bridge keeps for it. The service has no call that lists users,
//! so a reconcile reads each user it knows with `read`.

pub mod client;
pub mod config;
pub mod payload;

use std::sync::Arc;

use reqwest::header::HeaderName;

use self::client::{PathTemplate, Paths, VikingCloudAuth, VikingCloudClient};
pub(crate) use self::config::VikingCloudConfig;
use self::payload::{UserKey, USER_KEY};
use crate::targets::http::{found, Answer, Session};
use crate::targets::vendor::{keys, Built, Emulator, TargetConfigError, Vendor, VendorKeys};
use crate::targets::{Payload, RemoteAccount, Target, TargetResult, TargetSchema};

pub(crate) struct VikingCloudTarget {
    name: String,
    schema: TargetSchema,
    authenticator: String,
    client: VikingCloudClient,
    mark_note: String,
}

/// VikingCloud's entry in `targets::VENDORS`.
pub static VENDOR: Vendor = Vendor {
    kind: "vikingcloud",
    schema: payload::schema,
    keys: keys::<VikingCloudConfig>,
    throttle_default: None,
    emulator: Emulator {
        flavor: crate::sandbox::vikingcloud::flavor,
        port: 18442,
        rate_limit_per_second: None,
    },
};

impl VendorKeys for VikingCloudConfig {
    fn build(&self, built: Built) -> Result<Arc<dyn Target>, TargetConfigError> {
        Ok(Arc::new(VikingCloudTarget::build(built, self)?))
    }
}

impl VikingCloudTarget {
    pub(crate) fn build(built: Built, cfg: &VikingCloudConfig) -> Result<Self, TargetConfigError> {
        let header = |field: &str, value: &str| {
            HeaderName::try_from(value)
                .map_err(|err| TargetConfigError::invalid(built.key(field), err.to_string()))
        };
        let path = |field: &str, value: &str| PathTemplate::parse(&built.key(field), value);
        let login_url = path("login_path", &cfg.login_path)?
            .fill(&built.base_url, None)
            .map_err(|err| TargetConfigError::invalid(built.key("login_path"), err.to_string()))?;
        let auth = VikingCloudAuth {
            login_url,
            username: cfg.username.clone(),
            password: cfg.password.resolve(&built.key("password"))?,
            access_header: header("access_token_header", &cfg.access_token_header)?,
            id_header: header("id_token_header", &cfg.id_token_header)?,
        };
        let paths = Paths {
            lookup: path("lookup_path", &cfg.lookup_path)?,
            update: path("update_path", &cfg.update_path)?,
            create: path("create_path", &cfg.create_path)?,
            delete: path("delete_path", &cfg.delete_path)?,
        };
        Ok(Self {
            client: VikingCloudClient {
                session: Session::new(built.transport, auth),
                base: built.base_url,
                paths,
            },
            name: built.name,
            schema: payload::schema(),
            authenticator: cfg.authenticator.clone(),
            mark_note: cfg.mark_note.clone(),
        })
    }

    async fn lookup(&self, key: UserKey) -> TargetResult<Option<RemoteAccount>> {
        Ok(
            found(self.client.lookup(&key).await)?.map(|fields| RemoteAccount {
                id: key.id(),
                fields,
            }),
        )
    }

    /// The user a write answered with, or, when the answer carries none (the docs promise
    /// only "200 OK"), the user as read back.
    async fn account(&self, key: &UserKey, answer: Answer) -> TargetResult<RemoteAccount> {
        let fields = match answer.json::<Payload>() {
            Ok(user) if user.contains_key(USER_KEY) => user,
            _ => self.client.lookup(key).await?,
        };
        Ok(RemoteAccount {
            id: key.id(),
            fields,
        })
    }
}

#[async_trait::async_trait]
impl Target for VikingCloudTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
        self.lookup(UserKey::of(payload, &self.authenticator)?)
            .await
    }

    async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount> {
        let key = UserKey::of(payload, &self.authenticator)?;
        let mut body = payload::create_body(&self.schema, payload, &key)?;
        payload::with_mark(&mut body, &self.mark_note);
        let answer = self.client.create(&body).await?;
        self.account(&key, answer).await
    }

    /// The account's id, not the payload, decides which user is updated: the service cannot
    /// rename a `userKey`. The service replaces `roles` and `privileges` with what an update
    /// sends, so the user is read first and its lists are sent back with only the mapping's
    /// entries added or removed.
    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        let key = UserKey::from_id(id)?;
        let current = self.client.lookup(&key).await?;
        let body = payload::update_body(&self.schema, payload, &key, &current)?;
        let answer = self.client.update(&body).await?;
        self.account(&key, answer).await
    }

    async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        self.update(id, &payload::disabled(payload)).await
    }

    async fn delete(&self, id: &str) -> TargetResult<()> {
        found(self.client.delete(&UserKey::from_id(id)?).await).map(drop)
    }

    async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>> {
        self.lookup(UserKey::from_id(id)?).await
    }

    fn marked(&self, account: &RemoteAccount) -> bool {
        payload::carries_mark(&account.fields, &self.mark_note)
    }

    fn as_stored(&self, payload: &Payload) -> Payload {
        payload::as_stored(&self.schema, payload, &self.authenticator)
    }
}
