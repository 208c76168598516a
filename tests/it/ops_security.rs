//! Secrets and trust as an operator configures them: development tokens cannot ride along
//! with real clients, the production example passes `config check`, `/metrics` is not open
//! to whoever reaches the listener, forwarding headers count only from trusted proxies, and
//! guessing tokens is slowed per address.

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use scim_bridge::clock::ManualClock;
use scim_bridge::config::{MetricsSettings, Overrides, Settings, EMBEDDED_DEFAULT};
use serde_json::Value;

use crate::support::{assert_scim_error, user, TestApp, ADMIN_TOKEN, TOKEN};

const PRODUCTION_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/production.example.toml"
);

/// The variables the production example says it needs.
const PRODUCTION_ENV: &[(&str, &str)] = &[
    ("ENTRA_SCIM_TOKEN", "entra-token"),
    ("OKTA_SCIM_TOKEN", "okta-token"),
    ("SCIM_BRIDGE_ADMIN_TOKEN", "admin-token"),
    ("SCIM_BRIDGE_METRICS_TOKEN", "metrics-token"),
    ("APPGATE_PASSWORD", "p"),
    ("VIKINGCLOUD_PASSWORD", "p"),
    ("KIBO_CLIENT_SECRET", "p"),
    ("PRIMAVERA_PASSWORD", "p"),
];

fn config_check(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["config", "check", "--config", config])
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_copied_development_config_with_real_clients_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (section, hash) in [("scim", "a".repeat(64)), ("admin", "b".repeat(64))] {
        let path = dir.path().join(format!("{section}.toml"));
        let text = format!(
            "{EMBEDDED_DEFAULT}\n[[{section}.clients]]\nname = \"real\"\ntoken_sha256 = \"{hash}\"\n"
        );
        std::fs::write(&path, text).unwrap();

        let err = Settings::load(Some(&path), &Overrides::default()).unwrap_err();

        let message = err.to_string();
        assert!(
            message.contains(&format!("{section}.dev_token")),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        let (ok, output) = config_check(path.to_str().unwrap(), &[]);
        assert!(!ok);
        assert!(output.contains(&format!("{section}.dev_token")), "{output}");
    }
}

#[test]
fn the_production_example_passes_config_check_with_the_environment_it_documents() {
    let (ok, output) = config_check(PRODUCTION_EXAMPLE, PRODUCTION_ENV);
    assert!(ok, "{output}");
    assert!(output.contains("configuration is valid"), "{output}");

    // The check resolves secrets: without one of them it names the variable.
    let missing: Vec<_> = PRODUCTION_ENV
        .iter()
        .copied()
        .filter(|(name, _)| *name != "KIBO_CLIENT_SECRET")
        .collect();
    let (ok, output) = config_check(PRODUCTION_EXAMPLE, &missing);
    assert!(!ok);
    assert!(output.contains("KIBO_CLIENT_SECRET"), "{output}");

    let text = std::fs::read_to_string(PRODUCTION_EXAMPLE).unwrap();
    let settings = Settings::from_toml(&text, &Overrides::default()).unwrap();
    assert!(settings.scim.dev_token.is_none() && settings.admin.dev_token.is_none());
    assert!(!settings.sandbox.start);
    assert_eq!(
        settings.target_names(),
        ["appgate", "kibo", "primavera", "vikingcloud"]
    );
}

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}/metrics", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn metrics_want_their_own_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "scrape-me\n").unwrap();
    let app = TestApp::spawn_with(|settings| {
        settings.metrics = MetricsSettings {
            token_file: Some(token_file.clone()),
            ..MetricsSettings::default()
        };
    })
    .await;

    assert_eq!(scrape(&app, None).await.status(), 401);
    assert_eq!(scrape(&app, Some("wrong")).await.status(), 401);
    // The SCIM token is not a scrape token.
    assert_eq!(scrape(&app, Some(TOKEN)).await.status(), 401);
    let accepted = scrape(&app, Some("scrape-me")).await;
    assert_eq!(accepted.status(), 200);
    assert!(accepted
        .text()
        .await
        .unwrap()
        .contains("scim_bridge_accepted_writes"));
}

#[tokio::test]
async fn without_a_token_metrics_answer_only_this_host_and_not_through_a_proxy() {
    let local = TestApp::spawn().await;
    assert_eq!(scrape(&local, None).await.status(), 200);

    // A reverse proxy on this host makes every caller look local: once it is declared,
    // loopback no longer means "this host's own scraper".
    let proxied = TestApp::spawn_with(|settings| {
        settings.server.trusted_proxies =
            serde_json::from_value(serde_json::json!(["127.0.0.1"])).unwrap();
    })
    .await;
    let refused = scrape(&proxied, None).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("token_file"));
}

async fn location_with_forwarded_headers(app: &TestApp) -> String {
    let created = app
        .request(reqwest::Method::POST, "/Users")
        .header("Content-Type", "application/scim+json")
        .header("X-Forwarded-Host", "attacker.example")
        .header("X-Forwarded-Proto", "https")
        .body(user(&format!("fwd-{}", uuid::Uuid::new_v4())).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    body["meta"]["location"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarded_host_and_proto_count_only_from_trusted_proxies() {
    let direct = TestApp::spawn().await;
    let location = location_with_forwarded_headers(&direct).await;
    assert!(
        location.starts_with(&format!("{}/scim/v2/Users/", direct.base)),
        "{location}"
    );

    let proxied = TestApp::spawn_with(|settings| {
        settings.server.trusted_proxies =
            serde_json::from_value(serde_json::json!(["10.0.0.0/8", "127.0.0.1"])).unwrap();
    })
    .await;
    let location = location_with_forwarded_headers(&proxied).await;
    assert!(
        location.starts_with("https://attacker.example/scim/v2/Users/"),
        "{location}"
    );
}

/// A client whose connections come from `address` (any 127.0.0.0/8 address reaches the
/// bridge on 127.0.0.1), so one test can play several peers.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_authentication_is_throttled_per_address_without_locking_out_valid_clients() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let app = TestApp::spawn_with_clock(clock.clone(), |settings| {
        settings.server.failed_auth_per_minute = 20;
    })
    .await;
    let guesser = client_from("127.0.0.2");
    let users = app.url("/Users");

    let mut statuses = Vec::new();
    for n in 0..60 {
        let answer = guesser
            .get(&users)
            .bearer_auth(format!("guess-{n}"))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status());
        if n == 59 {
            assert!(answer.headers().contains_key("retry-after"));
            assert_scim_error(answer, 429, None).await;
        }
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((unauthorized, throttled), (20, 40));

    // The valid token from the same address is served; the admin API shares the budget.
    let valid = guesser.get(&users).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(valid.status(), 200);
    let admin = guesser
        .get(format!("{}/admin/targets", app.base))
        .bearer_auth("admin-guess")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(admin.headers().contains_key("retry-after"));
    let admin_valid = guesser
        .get(format!("{}/admin/targets", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_valid.status(), 200);

    // Another address has a budget of its own.
    let other = client_from("127.0.0.3");
    let answer = other.get(&users).bearer_auth("guess").send().await.unwrap();
    assert_eq!(answer.status(), 401);

    // A minute later (on the injected clock) the guesser is answered 401 again.
    clock.advance(Duration::from_secs(61));
    let answer = guesser
        .get(&users)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
}
