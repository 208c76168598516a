//! The console in a real browser: headless Chromium driven over WebDriver through a sign-in,
//! the overview, a user's page, a mapping change (an error at its line, fixed, diffed,
//! applied and delivered), a dead letter replayed, a field edited on a target by hand and
//! marked on the user's page, and a reconcile started that finds an account made by hand,
//! with a screenshot of each page under `target/console-screenshots/`. Skipped, and saying
//! so, where no chromedriver is found.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::support::{mappings_dir, user, SyncedApp, ADMIN_TOKEN};
use scim_bridge::sandbox::Faults;
use scim_bridge::targets;

/// How long the browser may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(20);

fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    })
}

/// The chromedriver process, ended when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_browser(driver_path: &PathBuf) -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"]
    });
    if std::path::Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match connected {
            Ok(client) => return (driver, client),
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver never answered: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits until the page's text contains `text`.
async fn until_text(browser: &Client, text: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // While the next page replaces the last one there may be no body yet: not shown yet.
        let body = match browser.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "'{text}' never showed: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types a whole new text into the mapping editor the way an edit does: the value changes
/// and an input event fires, which is what sends it to the check.
async fn edit(browser: &Client, text: &str) {
    browser
        .execute(
            "const editor = document.querySelector('textarea.editor'); \
             editor.value = arguments[0]; \
             editor.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![json!(text)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_admin_works_through_the_console_in_a_real_browser() {
    let Some(driver_path) = chromedriver() else {
        println!(
            "SKIPPED console browser test: no chromedriver on PATH or in CHROMEDRIVER \
             (install Debian's chromium and chromium-driver to run it)"
        );
        return;
    };
    let mappings = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(mappings_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, mappings.path().join(path.file_name().unwrap())).unwrap();
    }
    let mappings_path = mappings.path().to_owned();
    let synced = SyncedApp::spawn_with(move |settings| {
        settings.fanout.max_attempts = 2;
        settings.fanout.mappings_dir = mappings_path;
    })
    .await;
    // VikingCloud answers with server errors until the user is dead-lettered there.
    let viking = synced
        .sandbox
        .emulator(&targets::vikingcloud::VENDOR)
        .unwrap();
    viking.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    let mut ana = user("ana.browser");
    ana["externalId"] = json!("ext-ana");
    let created = synced.app.create_user(&ana).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.until_target("vikingcloud", |t| t["dead"] == 1).await;
    synced
        .until_target("appgate", |t| t["delivered"] == 1)
        .await;

    let (_driver, browser) = start_browser(&driver_path).await;
    let base = &synced.app.base;

    // Sign in.
    browser.goto(&format!("{base}/console")).await.unwrap();
    let token = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("input#token"))
        .await
        .unwrap();
    screenshot(&browser, "01-sign-in").await;
    token.send_keys(ADMIN_TOKEN).await.unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The overview.
    until_text(&browser, "Attempts per minute").await;
    until_text(&browser, "vikingcloud").await;
    screenshot(&browser, "02-overview").await;

    // Find the user and open their page.
    browser
        .find(Locator::LinkText("Users"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let search = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("input[name=q]"))
        .await
        .unwrap();
    search.send_keys("ANA.B").await.unwrap();
    browser
        .find(Locator::Css("form.search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The list before the search shows her too: wait for the search's own page, or the link
    // found may be one the navigation is about to replace (a stale element when clicked).
    let deadline = Instant::now() + PATIENCE;
    while !browser
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|query| query.contains("q=ANA.B"))
    {
        assert!(Instant::now() < deadline, "the search's page never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::LinkText("ana.browser"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "SCIM resource").await;
    until_text(&browser, "ext-ana").await;
    screenshot(&browser, "03-user").await;
    assert!(browser.current_url().await.unwrap().path().ends_with(&id));

    // Propose a mapping change with an error, see it at its line, fix it, diff, apply.
    browser
        .goto(&format!("{base}/console/mappings/appgate"))
        .await
        .unwrap();
    until_text(&browser, "Propose a change").await;
    let file = mappings.path().join("appgate.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let broken_line = original
        .lines()
        .position(|l| l.trim() == "[deprovision]")
        .unwrap()
        + 1;
    edit(
        &browser,
        &original.replace("[deprovision]", "[deprovisioning]"),
    )
    .await;
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&format!("#check li#L{broken_line}.has-error")))
        .await
        .unwrap();
    until_text(&browser, "error(s)").await;
    browser
        .execute(
            &format!("document.querySelector('#check li#L{broken_line}').scrollIntoView({{block: 'center'}});"),
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "04-mapping-error-at-its-line").await;
    let changed = original.replace(
        "Provisioned by scim-bridge from the identity provider; edits made here are overwritten.",
        "Managed by scim-bridge.",
    );
    edit(&browser, &changed).await;
    until_text(&browser, "Check passed").await;
    browser
        .find(Locator::XPath(
            "//button[contains(., 'Diff over stored users')]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "appgate: 1 of 1 users would change").await;
    browser
        .execute(
            "document.querySelector('#results').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "05-mapping-diff").await;
    browser
        .find(Locator::XPath("//button[contains(., 'Apply and reload')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "Applied version").await;
    screenshot(&browser, "06-mapping-applied").await;
    let deadline = Instant::now() + PATIENCE;
    while synced.live_accounts(&targets::appgate::VENDOR)[0].fields["notes"]
        != "Managed by scim-bridge."
    {
        assert!(Instant::now() < deadline, "appgate never got the change");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Replay the dead letter once VikingCloud is back.
    viking.set_faults(Faults::default());
    browser
        .find(Locator::LinkText("Failures"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "Replay this group").await;
    screenshot(&browser, "07-failures").await;
    browser
        .find(Locator::XPath("//button[contains(., 'Replay this group')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "deliveries to vikingcloud replayed").await;
    synced
        .until_target("vikingcloud", |t| t["dead"] == 0 && t["delivered"] == 1)
        .await;

    // Someone edits the Kibo account by hand; a dry-run sync (every target answering
    // again) reads it back, and the user's page marks the field that drifted.
    synced.until_target("kibo", |t| t["delivered"] == 1).await;
    let remote = synced.live_accounts(&targets::kibo::VENDOR)[0].id.clone();
    synced
        .by_hand(
            &targets::kibo::VENDOR,
            reqwest::Method::PATCH,
            &format!("/{remote}"),
            Some(json!({"lastName": "Changed-By-Hand"})),
        )
        .await;
    browser
        .goto(&format!("{base}/console/users/{id}"))
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath("//button[contains(., 'Sync dry run')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "dry run: nothing is sent").await;
    browser
        .goto(&format!("{base}/console/users/{id}"))
        .await
        .unwrap();
    until_text(&browser, "≠ delivered (drift)").await;
    browser
        .execute(
            "document.querySelector('td.differs').closest('section').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "03b-user-difference").await;

    // Reconcile Primavera, where someone made an account by hand, and see the finding.
    let hand_made = synced
        .sandbox
        .emulator(&targets::primavera::VENDOR)
        .unwrap()
        .insert_account(crate::support::object(json!({
            "email": "hand@example.com", "firstName": "Hand", "lastName": "Made"
        })));
    browser
        .find(Locator::LinkText("Reconcile"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "Start a run").await;
    browser
        .find(Locator::Css("select#target option[value=primavera]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::XPath("//button[contains(., 'Start')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "Reconcile run #").await;
    let deadline = Instant::now() + PATIENCE;
    while !browser
        .source()
        .await
        .unwrap()
        .contains(r#"class="state finished""#)
    {
        assert!(Instant::now() < deadline, "the reconcile never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
        browser.refresh().await.unwrap();
    }
    until_text(&browser, "orphan_unmarked (1)").await;
    until_text(&browser, &hand_made).await;
    screenshot(&browser, "08-reconcile-run").await;
    browser.close().await.unwrap();
}
