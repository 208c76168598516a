//! Test harness: the real application on port 0 with a temporary database, and a sandbox on
//! free ports with a clock the test moves, for the adapter and emulator tests.

use reqwest::{Method, Response};
use serde_json::Value;
use tempfile::TempDir;

use scim_bridge::clock::{ManualClock, SystemClock};
use scim_bridge::config::{Overrides, Settings, EMBEDDED_DEFAULT};
use scim_bridge::sandbox::{self, EmulatorHandle, Sandbox, SandboxConfig};
use scim_bridge::startup::{Application, BuildOptions};
use scim_bridge::targets::config::{build_targets, TargetConfig};
use scim_bridge::targets::vendor::Vendor;
use scim_bridge::targets::{Payload, Target};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const TOKEN: &str = "integration-test-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Starts the bridge on its embedded defaults, adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        TestApp::spawn_with_clock(Arc::new(SystemClock), tweak).await
    }

    /// The same, reading time from `clock` (rate limits, lockouts).
    pub async fn spawn_with_clock(
        clock: scim_bridge::clock::SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            db: Some(dir.path().join("bridge.db")),
            log_format: None,
            no_sandbox: true,
        };
        let mut settings = Settings::from_toml(EMBEDDED_DEFAULT, &overrides).expect("settings");
        settings.scim.dev_token = Some(TOKEN.into());
        // SCIM-only by default; tests of the fan-out bring their own sandbox and targets.
        settings.sandbox.start = false;
        settings.targets.clear();
        tweak(&mut settings);
        let options = BuildOptions {
            secret_key: Some([7; 32]),
            clock,
            ..BuildOptions::default()
        };
        let app = Application::build(settings, options).await.expect("build");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/scim/v2{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a user and returns its representation.
    pub async fn create_user(&self, body: &Value) -> Value {
        let response = self.post("/Users", body).await;
        assert_eq!(response.status(), 201, "create user {body}");
        response.json().await.expect("json")
    }

    pub async fn create_group(&self, body: &Value) -> Value {
        let response = self.post("/Groups", body).await;
        assert_eq!(response.status(), 201, "create group {body}");
        response.json().await.expect("json")
    }

    /// How many users written in SCIM the planner has not yet turned into desired states
    /// (needs the admin dev token configured).
    pub async fn planning(&self) -> u64 {
        let response = self
            .client
            .get(format!("{}/admin/targets", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        json_of(response, 200).await["planning"].as_u64().unwrap()
    }

    /// A request to the admin API, with its token.
    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/admin{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// An admin call that must answer 200: its JSON body.
    pub async fn admin_ok(&self, method: Method, path: &str) -> Value {
        let response = self.admin(method, path).send().await.unwrap();
        json_of(response, 200).await
    }

    /// Waits (bounded) until every user written so far is planned: from then on the ledger
    /// holds each target's desired state for them.
    pub async fn planned(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let planning = self.planning().await;
            if planning == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{planning} users were never planned"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads a response as JSON, asserting its status.
pub async fn json_of(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// Asserts an RFC 7644 error body with the given status and scimType.
pub async fn assert_scim_error(response: Response, status: u16, scim_type: Option<&str>) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = json_of(response, status).await;
    assert!(
        content_type.starts_with("application/scim+json"),
        "{content_type}"
    );
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], status.to_string());
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

pub fn user(name: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

pub fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|id| serde_json::json!({"value": id}))
        .collect();
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members
    })
}

pub struct Env {
    pub sandbox: Sandbox,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(SandboxConfig::ephemeral()).await
    }

    pub async fn start_with(cfg: SandboxConfig) -> Self {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let sandbox = sandbox::start(cfg, clock.clone()).await.unwrap();
        Self { sandbox, clock }
    }

    pub fn emulator(&self, kind: &Vendor) -> &EmulatorHandle {
        self.sandbox.emulator(kind).unwrap()
    }

    /// The default config's target of `kind`, pointed at this sandbox, after `tweak`.
    pub fn target(&self, kind: &Vendor, tweak: impl FnOnce(&mut TargetConfig)) -> Arc<dyn Target> {
        let mut cfg = self.sandbox.targets_config().unwrap();
        cfg.retain(|_, target| target.kind() == kind);
        let (_, target) = cfg.iter_mut().next().unwrap();
        tweak(target);
        let mut targets = build_targets(&cfg, self.clock.clone()).unwrap();
        assert_eq!(targets.len(), 1);
        targets.remove(0)
    }

    /// Moves the clock past the current second, so per-second rate limits start afresh.
    pub fn next_second(&self) {
        self.clock.advance(Duration::from_secs(1));
    }
}

pub fn object(value: Value) -> Payload {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}

/// The bridge with fan-out to a sandbox of its own, on free ports.
pub struct SyncedApp {
    pub app: TestApp,
    pub sandbox: Sandbox,
}

/// The shipped mapping files.
pub fn mappings_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")
}

impl SyncedApp {
    /// The Prometheus text `/metrics` serves (to this host, which needs no token).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.app.base);
        self.app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn spawn() -> SyncedApp {
        SyncedApp::spawn_with(|_| {}).await
    }

    /// Fast retries (10 ms base), quick polling, the shipped mappings, generous rate limits
    /// except Primavera's documented one; `tweak` adjusts further.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> SyncedApp {
        SyncedApp::spawn_with_clock(Arc::new(SystemClock), tweak).await
    }

    /// `spawn_with`, the bridge (not the sandbox) reading time from `clock`.
    pub async fn spawn_with_clock(
        clock: scim_bridge::clock::SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> SyncedApp {
        let sandbox = sandbox::start(SandboxConfig::ephemeral(), Arc::new(SystemClock))
            .await
            .unwrap();
        let mut targets = sandbox.targets_config().unwrap();
        for (name, target) in targets.iter_mut() {
            if name != "primavera" {
                target.rate_limit_per_second = 1000;
            }
            target.concurrency = 8;
            target.timeout_ms = 2000;
        }
        let app = TestApp::spawn_with_clock(clock, move |settings| {
            settings.targets = targets;
            settings.fanout.mappings_dir = mappings_dir();
            settings.fanout.poll_ms = 20;
            settings.fanout.backoff_base_ms = 10;
            settings.fanout.backoff_cap_ms = 200;
            tweak(settings);
        })
        .await;
        SyncedApp { app, sandbox }
    }

    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.admin(method, path)
    }

    pub async fn admin_ok(&self, method: Method, path: &str) -> Value {
        self.app.admin_ok(method, path).await
    }

    /// The per-target counts, once every user written so far is planned (a SCIM write is
    /// answered before its desired states are recorded).
    pub async fn lag(&self) -> Vec<Value> {
        self.app.planned().await;
        let response = self.admin(Method::GET, "/targets").send().await.unwrap();
        let body = json_of(response, 200).await;
        body["targets"].as_array().unwrap().clone()
    }

    /// Waits (bounded) until no target has anything pending or retrying and each holds at
    /// least `delivered` delivered rows; returns the final per-target view.
    pub async fn settle(&self, delivered: u64) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let lag = self.lag().await;
            let done = lag.iter().all(|t| {
                t["pending"] == 0
                    && t["retrying"] == 0
                    && t["delivered"].as_u64().unwrap() >= delivered
            });
            if done {
                return lag;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries did not settle: {lag:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (bounded) until `check` holds for the ledger view of one target.
    pub async fn until_target(&self, target: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let lag = self.lag().await;
            let row = lag.iter().find(|t| t["target"] == target).unwrap().clone();
            if check(&row) {
                return row;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{target} never got there: {row}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Does what a person in the vendor's console does (`/_sandbox/accounts{path}`).
    pub async fn by_hand(&self, vendor: &Vendor, method: Method, path: &str, body: Option<Value>) {
        let origin = self.sandbox.emulator(vendor).unwrap().origin();
        let mut request = self
            .app
            .client
            .request(method, format!("{origin}/_sandbox/accounts{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    /// Live (not deleted) accounts of one emulator.
    pub fn live_accounts(&self, kind: &Vendor) -> Vec<scim_bridge::sandbox::AccountSnapshot> {
        live_accounts(&self.sandbox, kind)
    }
}

/// The accounts of `kind`'s emulator that are not deleted.
pub fn live_accounts(
    sandbox: &Sandbox,
    kind: &Vendor,
) -> Vec<scim_bridge::sandbox::AccountSnapshot> {
    sandbox
        .emulator(kind)
        .unwrap()
        .accounts()
        .into_iter()
        .filter(|a| !a.deleted)
        .collect()
}

pub const ADMIN_TOKEN: &str = "scim-bridge-admin-dev-token";
