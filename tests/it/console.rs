//! The admin console over HTTP: sign-in and its refusals, the session cookie and its expiry,
//! CSRF, the security headers, every page and action, and that no secret reaches a page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::Response;
use serde_json::json;

use crate::support::{mappings_dir, user, SyncedApp, TestApp, ADMIN_TOKEN, TOKEN};
use scim_bridge::clock::ManualClock;
use scim_bridge::sandbox::Faults;
use scim_bridge::targets;
use scim_bridge::targets::config::GuardConfig;

const PASSWORD: &str = "Sup3r-Secret-Pa55!";

/// A browser-like client of the console: keeps the session cookie, follows no redirect.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
    csrf: String,
    /// Every page body seen, to search for secrets at the end.
    seen: Vec<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            csrf: String::new(),
            seen: Vec::new(),
        }
    }

    async fn sign_in(&mut self, token: &str) -> Response {
        let response = self
            .client
            .post(format!("{}/console/sign-in", self.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        if let Some(cookie) = response.headers().get(SET_COOKIE) {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        response
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let request = self.client.get(format!("{}{path}", self.base));
        let response = self.with_cookie(request).send().await.unwrap();
        self.read(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        self.post_with(path, form, false).await
    }

    async fn post_with(&mut self, path: &str, form: &[(&str, &str)], htmx: bool) -> (u16, String) {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if htmx {
            request = request.header("HX-Request", "true");
        }
        let response = self.with_cookie(request).send().await.unwrap();
        self.read(response).await
    }

    async fn read(&mut self, response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        if let Some(at) = body.find(r#"name="csrf" value=""#) {
            let rest = &body[at + r#"name="csrf" value=""#.len()..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        self.seen.push(body.clone());
        (status, location.unwrap_or(body))
    }
}

#[tokio::test]
async fn sign_in_takes_an_admin_token_refuses_a_scim_one_and_sign_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);

    let (status, location) = browser.get("/console").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
    let (status, page) = browser.get("/console/sign-in").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"name="token""#), "{page}");

    let refused = browser.sign_in(TOKEN).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get(SET_COOKIE).is_none());
    assert!(refused.text().await.unwrap().contains("not an admin token"));

    let signed_in = browser.sign_in(ADMIN_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()[LOCATION], "/console");
    let cookie = signed_in.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let response = browser
        .with_cookie(browser.client.get(format!("{}/console", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let (_, page) = browser.read(response).await;
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
    assert!(!page.contains("<script>"), "no inline script: {page}");

    // Embedded assets are served from the binary.
    let (status, css) = browser.get("/console/assets/console.css").await;
    assert_eq!(status, 200);
    assert!(css.contains("ol.code"));
    let (status, _) = browser.get("/console/assets/htmx-2.0.11.min.js").await;
    assert_eq!(status, 200);
    let (status, _) = browser.get("/console/assets/../../Cargo.toml").await;
    assert_eq!(status, 404);

    let (status, page) = browser
        .post("/console/sign-out", &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403, "{page}");
    let (status, page) = browser.post("/console/sign-out", &[]).await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("the form is incomplete or malformed"),
        "{page}"
    );
    let (status, page) = browser.get("/console/users?after=x&after_seq=first").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("the query string is malformed"), "{page}");
    let csrf = browser.csrf.clone();
    let (status, location) = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
    let (status, location) = browser.get("/console").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
}

#[tokio::test]
async fn a_session_ends_after_half_an_hour_unused() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);

    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(browser.get("/console/users").await.0, 200);
    // Used a minute ago: the idle time starts again.
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(browser.get("/console/users").await.0, 200);
    clock.advance(Duration::from_secs(31 * 60));
    let (status, location) = browser.get("/console/users").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign-in"));
    // An htmx request is told where to go too.
    let response = browser
        .with_cookie(browser.client.get(format!("{}/console", app.base)))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["hx-redirect"], "/console/sign-in");
}

/// The shipped mappings in a directory of the test's own, so applying a change there
/// touches nothing shared.
fn own_mappings() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(mappings_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[tokio::test]
async fn every_page_and_action_works_through_the_operators_calls_and_no_secret_reaches_a_page() {
    let mappings = own_mappings();
    let mappings_path = mappings.path().to_owned();
    let synced = SyncedApp::spawn_with(move |settings| {
        settings.fanout.max_attempts = 2;
        settings.fanout.mappings_dir = mappings_path;
    })
    .await;
    let app = &synced.app;
    let appgate = synced.sandbox.emulator(&targets::appgate::VENDOR).unwrap();
    appgate.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.insert_account(crate::support::object(json!({
        "emailAddress": "someone.else@example.com",
        "userName": "clash",
        "firstName": "Some",
        "lastName": "One",
        "isActive": true
    })));
    let mut clash = user("clash");
    clash["password"] = json!(PASSWORD);
    clash["externalId"] = json!("ext-clash");
    let created = app.create_user(&clash).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.until_target("appgate", |t| t["dead"] == 1).await;
    synced.until_target("kibo", |t| t["rejected"] == 1).await;

    let mut browser = Browser::new(app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);

    // Overview: every target, its queue, the chart, pause and resume.
    let (status, page) = browser.get("/console").await;
    assert_eq!(status, 200);
    for expected in [
        "appgate",
        "kibo",
        "primavera",
        "vikingcloud",
        "<svg",
        "Pause",
        "Every change the identity provider sent is planned.",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let (status, _) = browser
        .post("/console/targets/kibo/pause", &[("csrf", "x")])
        .await;
    assert_eq!(status, 403, "a pause without the CSRF token is refused");
    let csrf = browser.csrf.clone();
    let (status, location) = browser
        .post("/console/targets/kibo/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console?done=kibo%20paused")
    );
    synced.until_target("kibo", |t| t["paused"] == true).await;
    let (_, page) = browser.get("/console?done=kibo%20paused").await;
    assert!(
        page.contains("kibo paused") && page.contains("Resume"),
        "{page}"
    );
    let (status, _) = browser
        .post("/console/targets/kibo/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    synced.until_target("kibo", |t| t["paused"] == false).await;
    let (status, _) = browser
        .post("/console/targets/nope/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);

    // Users: each search field, and a refused one.
    for query in [
        "/console/users?field=userName&q=CLA",
        "/console/users?field=email&q=clash%40",
        "/console/users?field=externalId&q=ext-",
    ] {
        let (status, page) = browser.get(query).await;
        assert_eq!(status, 200);
        assert!(
            page.contains(&format!("/console/users/{id}")),
            "{query}: {page}"
        );
    }
    let (_, page) = browser.get("/console/users?field=externalId&q=EXT-").await;
    assert!(page.contains("No user matches"), "{page}");
    let (status, _) = browser.get("/console/users?field=password&q=x").await;
    assert_eq!(status, 400);

    // A user's page: the resource, each target's state, answers and timeline.
    let (status, page) = browser.get(&format!("/console/users/{id}")).await;
    assert_eq!(status, 200);
    for expected in [
        "SCIM resource",
        "ext-clash",
        "rejected",
        "HTTP 409",
        "dead",
        "gave up after 2 attempts",
        "Attempts",
        "Desired",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let (status, _) = browser.get("/console/users/no-such-user").await;
    assert_eq!(status, 404);

    // Failures grouped by target and reason; replay a group, then a user.
    let (status, page) = browser.get("/console/failures").await;
    assert_eq!(status, 200);
    assert!(page.contains("Replay this group") && page.contains("gave up after 2 attempts"));
    appgate.set_faults(Faults::default());
    let dead = synced
        .admin(
            reqwest::Method::GET,
            "/deliveries?state=dead&target=appgate",
        )
        .send()
        .await
        .unwrap();
    let dead = crate::support::json_of(dead, 200).await;
    let reason = dead["deliveries"][0]["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        page.contains(&format!(r#"name="reason" value="{reason}""#)),
        "{page}"
    );
    let (status, location) = browser
        .post(
            "/console/failures/replay",
            &[
                ("csrf", &csrf),
                ("target", "appgate"),
                ("state", "dead"),
                ("reason", &reason),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        location.contains("1%20deliveries%20to%20appgate%20replayed"),
        "{location}"
    );
    synced
        .until_target("appgate", |t| t["dead"] == 0 && t["delivered"] == 1)
        .await;
    kibo.reset();
    let (status, _) = browser
        .post(
            &format!("/console/users/{id}/replay"),
            &[("csrf", &csrf), ("target", "kibo")],
        )
        .await;
    assert_eq!(status, 303);
    synced
        .until_target("kibo", |t| t["rejected"] == 0 && t["delivered"] == 1)
        .await;

    // Mappings: the list, a file with its findings, a proposal checked, diffed, previewed,
    // refused when stale, then applied and delivered.
    let (status, page) = browser.get("/console/mappings").await;
    assert_eq!(status, 200);
    assert!(page.contains("/console/mappings/appgate"), "{page}");
    let (status, page) = browser.get("/console/mappings/appgate").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"class="t-comment""#),
        "comments are shown: {page}"
    );
    let base = {
        let at = page.find(r#"name="base" value=""#).unwrap() + r#"name="base" value=""#.len();
        page[at..at + 64].to_owned()
    };
    let file = mappings.path().join("appgate.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let broken_line = original
        .lines()
        .position(|l| l.trim() == "[deprovision]")
        .unwrap()
        + 1;
    let broken = original.replace("[deprovision]", "[deprovisioning]");
    let (status, fragment) = browser
        .post_with(
            "/console/mappings/appgate/check",
            &[("csrf", &csrf), ("text", &broken), ("base", &base)],
            true,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!fragment.contains("<html"), "htmx gets the fragment only");
    assert!(fragment.contains("check-bad"), "{fragment}");
    assert!(
        fragment.contains(&format!(r#"id="L{broken_line}" class="has-error""#)),
        "the error sits at line {broken_line}: {fragment}"
    );
    let changed = original.replace(
        "Provisioned by scim-bridge from the identity provider; edits made here are overwritten.",
        "Managed by scim-bridge.",
    );
    assert_ne!(changed, original);
    let (status, job) = browser
        .post(
            "/console/mappings/appgate/diff",
            &[("csrf", &csrf), ("text", &changed), ("base", &base)],
        )
        .await;
    assert_eq!(status, 303, "the diff runs in the background: {job}");
    let page = until_diff_ends(&mut browser, &job).await;
    assert!(
        page.contains("appgate: 1 of 1 users would change"),
        "{page}"
    );
    assert!(
        page.contains("field notes") && page.contains("Managed by scim-bridge."),
        "{page}"
    );
    let (status, _) = browser
        .post(
            "/console/mappings/appgate/diff",
            &[("csrf", &csrf), ("text", &broken), ("base", &base)],
        )
        .await;
    assert_eq!(status, 400);
    let (status, page) = browser
        .post(
            "/console/mappings/appgate/preview",
            &[
                ("csrf", &csrf),
                ("text", &changed),
                ("base", &base),
                ("user", "CLASH"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Proposed") && page.contains("Managed by scim-bridge."),
        "{page}"
    );
    let (status, _) = browser
        .post(
            "/console/mappings/appgate/apply",
            &[
                ("csrf", &csrf),
                ("text", &changed),
                ("base", &"0".repeat(64)),
            ],
        )
        .await;
    assert_eq!(
        status, 409,
        "a proposal from a file that changed since is refused"
    );
    let (status, _) = browser
        .post(
            "/console/mappings/appgate/apply",
            &[("csrf", &csrf), ("text", &broken), ("base", &base)],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let (status, location) = browser
        .post(
            "/console/mappings/appgate/apply",
            &[("csrf", &csrf), ("text", &changed), ("base", &base)],
        )
        .await;
    assert_eq!(status, 303, "{location}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), changed);
    assert_eq!(
        std::fs::read_to_string(mappings.path().join("appgate.toml.bak")).unwrap(),
        original
    );
    synced
        .until_target("appgate", |t| t["delivered"] == 1 && t["pending"] == 0)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while synced.live_accounts(&targets::appgate::VENDOR)[0].fields["notes"]
        != "Managed by scim-bridge."
    {
        assert!(
            std::time::Instant::now() < deadline,
            "appgate never got the change"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, page) = browser.get(&location).await;
    assert!(page.contains("Applied version"), "{page}");

    // No page carried a secret: the user's password, a token, a target's credentials.
    for secret in [
        PASSWORD,
        ADMIN_TOKEN,
        TOKEN,
        "sandbox-password",
        "sandbox-client-secret",
    ] {
        for page in &browser.seen {
            assert!(!page.contains(secret), "{secret} in a page: {page}");
        }
    }
}

/// Reads a diff job's page until the job has ended (bounded).
async fn until_diff_ends(browser: &mut Browser, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, page) = browser.get(path).await;
        assert_eq!(status, 200, "{page}");
        if !page.contains("hx-trigger=\"every 1s\"") {
            return page;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads a console page until `done` says the reconcile run on it has ended (bounded).
async fn until_run_ends(browser: &mut Browser, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = browser.get(path).await;
        assert_eq!(status, 200, "{page}");
        if !page.contains(r#"class="state running""#) {
            return page;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_reconcile_page_starts_a_run_shows_its_findings_by_kind_and_audits_the_admin() {
    let synced = SyncedApp::spawn().await;
    let primavera = synced
        .sandbox
        .emulator(&targets::primavera::VENDOR)
        .unwrap();
    let hand_made = primavera.insert_account(crate::support::object(json!({
        "email": "hand@example.com", "firstName": "Hand", "lastName": "Made"
    })));
    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);

    let (status, page) = browser.get("/console/reconcile").await;
    assert_eq!(status, 200);
    for expected in [
        r#"aria-current="page">Reconcile"#,
        "No reconcile has run yet",
        r#"<option value="primavera">"#,
        r#"name="apply""#,
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let start = [("target", "primavera"), ("apply", "true")];
    let (status, _) = browser
        .post(
            "/console/reconcile",
            &[&start[..], &[("csrf", "forged")]].concat(),
        )
        .await;
    assert_eq!(status, 403, "a start without the CSRF token is refused");
    let (status, _) = browser.get("/console/reconcile").await;
    assert_eq!(status, 200);
    assert!(browser
        .seen
        .last()
        .unwrap()
        .contains("No reconcile has run yet"));

    let csrf = browser.csrf.clone();
    let (status, location) = browser
        .post(
            "/console/reconcile",
            &[&start[..], &[("csrf", &csrf)]].concat(),
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("/console/reconcile/runs/"),
        "{location}"
    );
    let page = until_run_ends(&mut browser, &location).await;
    for expected in [
        r#"class="state finished""#,
        "policies applied",
        "orphan_unmarked (1)",
        "untouched",
        &hand_made,
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }

    // One kind at a time; an empty kind, an unknown kind and an unknown run.
    let (status, page) = browser.get(&format!("{location}?kind=missing")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("No findings here") && !page.contains(&hand_made),
        "{page}"
    );
    let (status, page) = browser
        .get(&format!("{location}?kind=orphan_unmarked"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains(&hand_made), "{page}");
    let (status, page) = browser.get(&format!("{location}?kind=bogus")).await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown finding kind bogus"), "{page}");
    for missing in [
        "/console/reconcile/runs/999999",
        "/console/reconcile/runs/x",
    ] {
        let (status, page) = browser.get(missing).await;
        assert_eq!(status, 404, "{missing}: {page}");
    }

    // The list: newest first, with its counts per kind.
    let (status, page) = browser.get("/console/reconcile").await;
    assert_eq!(status, 200);
    let run = location.rsplit('/').next().unwrap();
    assert!(page.contains(&format!(">#{run}</a>")), "{page}");
    assert!(!page.contains("A run is in progress"), "{page}");

    // Signals go to the reconciler; without the token they are refused.
    for signal in ["pause", "resume", "cancel"] {
        let path = format!("/console/reconcile/{signal}");
        let (status, _) = browser.post(&path, &[("csrf", "forged")]).await;
        assert_eq!(status, 403, "{signal}");
        let (status, location) = browser.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(status, 303, "{signal}");
        assert!(
            location.starts_with("/console/reconcile?done="),
            "{location}"
        );
    }

    // The applied run is in the audit trail under the signed-in client.
    let response = synced
        .admin(reqwest::Method::GET, "/audit?action=reconcile_apply")
        .send()
        .await
        .unwrap();
    let audit: serde_json::Value = response.json().await.unwrap();
    let who = signed_in_as(&page);
    assert_eq!(
        audit["entries"][0]["actor"],
        format!("admin:{who}"),
        "{audit}"
    );
    assert_eq!(audit["entries"][0]["target"], "primavera", "{audit}");
}

/// The signed-in client's name as the page header shows it.
fn signed_in_as(page: &str) -> &str {
    page.split(r#"<span class="who">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
}

#[tokio::test]
async fn held_deprovisions_are_discarded_or_released_from_their_page_and_the_audit_page_shows_who()
{
    let synced = SyncedApp::spawn_with(|settings| {
        for (name, target) in settings.targets.iter_mut() {
            target.guard = GuardConfig {
                max_deprovisions: if name == "kibo" { 1 } else { 500 },
                window_secs: 600,
                max_percent: 100,
                ..GuardConfig::default()
            };
        }
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let created = synced.app.create_user(&user(&format!("guarded{n}"))).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    synced.settle(5).await;
    let deactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    for id in &ids[..3] {
        let response = synced.app.patch(&format!("/Users/{id}"), &deactivate).await;
        assert_eq!(response.status(), 200);
    }
    synced
        .until_target("kibo", |t| t["held"] == 2 && t["pending"] == 0)
        .await;

    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let (status, page) = browser.get("/console").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"<a class="state held" href="/console/held">held 2</a>"#),
        "{page}"
    );
    assert_eq!(page.matches(r#"class="state held""#).count(), 1, "{page}");

    let (status, page) = browser.get("/console/held").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("2 deprovisions") && page.contains("disable"),
        "{page}"
    );
    let listed = ids[..3]
        .iter()
        .filter(|id| page.contains(&format!("/console/users/{id}")))
        .count();
    assert_eq!(listed, 2, "{page}");
    let who = signed_in_as(&page).to_owned();

    let (status, _) = browser
        .post("/console/held/kibo/discard", &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    let csrf = browser.csrf.clone();
    let (status, _) = browser
        .post("/console/held/nope/release", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);
    let (status, location) = browser
        .post("/console/held/kibo/discard", &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (
            303,
            "/console/held?done=2%20held%20deprovisions%20of%20kibo%20discarded"
        )
    );
    synced.until_target("kibo", |t| t["held"] == 0).await;
    let (_, page) = browser.get(&location).await;
    assert!(
        page.contains("2 held deprovisions of kibo discarded") && page.contains("holds nothing"),
        "{page}"
    );
    let (status, location) = browser
        .post("/console/held/kibo/release", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    assert!(
        location.contains("0%20held%20deprovisions%20of%20kibo%20released"),
        "{location}"
    );

    let response = synced
        .admin(reqwest::Method::GET, "/audit?target=kibo")
        .send()
        .await
        .unwrap();
    let audit: serde_json::Value = response.json().await.unwrap();
    let actor = format!("admin:{who}");
    assert_eq!(audit["entries"][0]["action"], "release", "{audit}");
    assert_eq!(audit["entries"][0]["actor"], actor.as_str(), "{audit}");
    assert_eq!(audit["entries"][1]["action"], "discard", "{audit}");
    assert_eq!(audit["entries"][1]["actor"], actor.as_str(), "{audit}");
    assert_eq!(audit["entries"][1]["detail"]["discarded"], 2, "{audit}");

    // The same trail on the audit page, newest first, and filtered by action.
    let (status, page) = browser.get("/console/audit").await;
    assert_eq!(status, 200);
    let release = page.find("<td>release</td>").expect(&page);
    let discard = page.find("<td>discard</td>").expect(&page);
    assert!(release < discard, "newest first: {page}");
    assert!(page.contains(&format!("<td>{actor}</td>")), "{page}");
    assert!(page.contains(r#"{&quot;discarded&quot;:2}"#), "{page}");
    let (status, page) = browser.get("/console/audit?action=discard").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<td>discard</td>") && !page.contains("<td>release</td>"),
        "{page}"
    );
    assert!(
        page.contains(r#"<option value="discard" selected>"#),
        "{page}"
    );
    let (status, page) = browser.get("/console/audit?action=bogus").await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown action bogus"), "{page}");
}

#[tokio::test]
async fn sync_now_on_a_users_page_shows_each_step_and_the_account_as_the_target_holds_it() {
    let synced = SyncedApp::spawn().await;
    let created = synced.app.create_user(&user("syncme")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.settle(1).await;
    // Someone edits the Kibo account by hand.
    let response = synced
        .admin(reqwest::Method::GET, &format!("/users/{id}"))
        .send()
        .await
        .unwrap();
    let status: serde_json::Value = response.json().await.unwrap();
    let remote = status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["desired"]["target"] == "kibo")
        .unwrap()["remote_id"]
        .as_str()
        .unwrap()
        .to_owned();
    synced
        .by_hand(
            &targets::kibo::VENDOR,
            reqwest::Method::PATCH,
            &format!("/{remote}"),
            Some(json!({"firstName": "Edited"})),
        )
        .await;

    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let (status, page) = browser.get(&format!("/console/users/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sync now") && page.contains("Sync dry run"),
        "{page}"
    );
    let who = signed_in_as(&page).to_owned();
    let path = format!("/console/users/{id}/sync");
    let (status, _) = browser.post(&path, &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let csrf = browser.csrf.clone();

    let (status, page) = browser
        .post(&path, &[("csrf", &csrf), ("dry_run", "true")])
        .await;
    assert_eq!(status, 200, "{page}");
    for expected in [
        "dry run: nothing is sent",
        "1. SCIM user:",
        "== kibo",
        "== appgate",
        &format!("3. account: {remote}"),
        "4. three-way: drifted",
        "actual &quot;Edited&quot;",
        "6. answer: none: dry run",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }

    let (status, page) = browser.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("dry run") && page.contains("5. request (sent)"),
        "{page}"
    );
    let (status, _) = browser
        .post("/console/users/nobody/sync", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);

    let response = synced
        .admin(reqwest::Method::GET, "/audit?action=sync")
        .send()
        .await
        .unwrap();
    let audit: serde_json::Value = response.json().await.unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the real sync is recorded: {audit}");
    assert_eq!(entries[0]["actor"], format!("admin:{who}"), "{audit}");
    assert_eq!(entries[0]["user_id"], id.as_str(), "{audit}");
}

/// The part of a user's page about one target: its card, from its heading to the next.
fn target_card<'p>(page: &'p str, target: &str) -> &'p str {
    let start = page
        .find(&format!("<h2>{target} "))
        .unwrap_or_else(|| panic!("no {target} card: {page}"));
    let rest = &page[start..];
    let end = rest[4..].find("<h2>").map_or(rest.len(), |at| at + 4);
    &rest[..end]
}

#[tokio::test]
async fn a_users_page_sets_desired_delivered_and_the_account_read_side_by_side() {
    let synced = SyncedApp::spawn().await;
    let created = synced.app.create_user(&user("threeway")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.settle(1).await;
    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let page_path = format!("/console/users/{id}");
    let sync_path = format!("/console/users/{id}/sync");

    // Never read: the account column says so, the other two agree.
    let (status, page) = browser.get(&page_path).await;
    assert_eq!(status, 200);
    let kibo = target_card(&page, "kibo");
    for expected in [
        "Desired, delivered and held",
        "not read yet",
        "Given",
        "in sync",
    ] {
        assert!(kibo.contains(expected), "{expected}: {kibo}");
    }
    assert!(!kibo.contains("≠"), "{kibo}");

    // In sync: a dry-run sync reads every account, and each matches what was delivered.
    let csrf = browser.csrf.clone();
    let (status, _) = browser
        .post(&sync_path, &[("csrf", &csrf), ("dry_run", "true")])
        .await;
    assert_eq!(status, 200);
    let (_, page) = browser.get(&page_path).await;
    for target in ["appgate", "kibo", "primavera", "vikingcloud"] {
        let card = target_card(&page, target);
        assert!(card.contains("Account read "), "{target}: {card}");
        assert!(!card.contains("not read yet"), "{target}: {card}");
        assert!(card.contains("in sync"), "{target}: {card}");
        assert!(!card.contains(r#"class="differs""#), "{target}: {card}");
    }

    // Drifted: someone edits the Kibo account by hand; the next read shows it.
    let remote = synced.live_accounts(&targets::kibo::VENDOR)[0].id.clone();
    synced
        .by_hand(
            &targets::kibo::VENDOR,
            reqwest::Method::PATCH,
            &format!("/{remote}"),
            Some(json!({"firstName": "Edited"})),
        )
        .await;
    browser
        .post(&sync_path, &[("csrf", &csrf), ("dry_run", "true")])
        .await;
    let (_, page) = browser.get(&page_path).await;
    let kibo = target_card(&page, "kibo");
    for expected in [
        "Edited",
        "≠ delivered (drift)",
        "1 field differs",
        r#"class="differs""#,
    ] {
        assert!(kibo.contains(expected), "{expected}: {kibo}");
    }
    assert!(!kibo.contains("≠ desired (pending)"), "{kibo}");

    // A pending change: with Kibo paused, a new given name is desired but not delivered;
    // the delivered column still holds the old one.
    let paused = synced
        .admin(reqwest::Method::POST, "/targets/kibo/pause")
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_success());
    let patched = synced
        .app
        .patch(
            &format!("/Users/{id}"),
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "name.givenName", "value": "Renamed"}]
            }),
        )
        .await;
    assert_eq!(patched.status(), 200);
    synced.until_target("kibo", |t| t["pending"] == 1).await;
    let (_, page) = browser.get(&page_path).await;
    let kibo = target_card(&page, "kibo");
    for expected in [
        "Renamed",
        "Given",
        "≠ desired (pending)",
        "≠ delivered (drift)",
    ] {
        assert!(kibo.contains(expected), "{expected}: {kibo}");
    }
    // Nothing of it reaches a page: the Kibo password is write-only.
    assert!(!kibo.contains("password"), "{kibo}");
}

#[tokio::test]
async fn a_mapping_diff_runs_in_the_background_shows_its_progress_and_can_be_cancelled() {
    let users = 3000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("diff.db");
    scim_bridge::bench::seed_users(&db, users).await.unwrap();
    let mappings = own_mappings();
    let mappings_path = mappings.path().to_owned();
    let db_path = db.clone();
    let synced = SyncedApp::spawn_with(move |settings| {
        settings.database.path = db_path;
        settings.fanout.mappings_dir = mappings_path;
    })
    .await;
    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let (_, page) = browser.get("/console/mappings/appgate").await;
    let csrf = browser.csrf.clone();
    let base = {
        let at = page.find(r#"name="base" value=""#).unwrap() + r#"name="base" value=""#.len();
        page[at..at + 64].to_owned()
    };
    let original = std::fs::read_to_string(mappings.path().join("appgate.toml")).unwrap();
    let changed = original.replace(
        "Provisioned by scim-bridge from the identity provider; edits made here are overwritten.",
        "Managed by scim-bridge.",
    );
    let form = [("csrf", csrf.as_str()), ("text", &changed), ("base", &base)];

    // Started: the same text again joins the running job rather than scanning twice.
    let (status, job) = browser.post("/console/mappings/appgate/diff", &form).await;
    assert_eq!(status, 303, "{job}");
    assert!(job.starts_with("/console/mappings/appgate/diff/"), "{job}");
    let (_, again) = browser.post("/console/mappings/appgate/diff", &form).await;
    assert_eq!(again, job, "one job per proposed text at a time");

    // Polled: the fragment says how far it got, and asks to be polled again.
    let (status, fragment) = browser.get(&format!("{job}/status")).await;
    assert_eq!(status, 200);
    assert!(
        fragment.contains("Diff over the stored users: ")
            && fragment.contains("hx-trigger=\"every 1s\""),
        "{fragment}"
    );
    assert!(
        !fragment.contains("<html"),
        "a fragment, not a page: {fragment}"
    );

    // Cancelled: it stops where it was, and cannot be cancelled twice.
    let (status, _) = browser
        .post(&format!("{job}/cancel"), &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    let (status, location) = browser
        .post(&format!("{job}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!((status, location.as_str()), (303, job.as_str()));
    let page = until_diff_ends(&mut browser, &job).await;
    assert!(page.contains("Cancelled after "), "{page}");
    assert!(page.contains(&format!(" of {users} users, ")), "{page}");
    assert!(!page.contains("users would change"), "{page}");
    let (status, page) = browser
        .post(&format!("{job}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("has already ended"), "{page}");

    // Started afresh and left to end: the result page, the proposed text kept in the form.
    let (_, job) = browser.post("/console/mappings/appgate/diff", &form).await;
    let page = until_diff_ends(&mut browser, &job).await;
    assert!(
        page.contains(&format!("appgate: {users} of {users} users would change")),
        "{page}"
    );
    assert!(
        page.contains(&format!("Scanned {users} users in")),
        "{page}"
    );
    assert!(page.contains("Managed by scim-bridge."), "{page}");
    let (status, fragment) = browser.get(&format!("{job}/status")).await;
    assert_eq!(status, 200);
    assert!(
        !fragment.contains("hx-trigger"),
        "polling stops: {fragment}"
    );
    let (status, _) = browser.get("/console/mappings/appgate/diff/999").await;
    assert_eq!(status, 404);
    let (status, _) = browser.get(&job.replace("/appgate/", "/kibo/")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_running_reconciles_page_polls_its_progress_and_who_paused_resumed_or_cancelled_is_audited(
) {
    let synced = SyncedApp::spawn().await;
    for name in ["run.one", "run.two", "run.three"] {
        synced.app.create_user(&user(name)).await;
    }
    synced.settle(3).await;
    // Each Primavera answer takes a while, so a run is still going when it is paused.
    let primavera = synced
        .sandbox
        .emulator(&targets::primavera::VENDOR)
        .unwrap();
    primavera.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let (_, page) = browser.get("/console/reconcile").await;
    let who = signed_in_as(&page).to_owned();
    let csrf = browser.csrf.clone();
    let start = [("target", "primavera"), ("csrf", csrf.as_str())];

    let (status, run) = browser.post("/console/reconcile", &start).await;
    assert_eq!(status, 303);
    let (status, _) = browser
        .post("/console/reconcile/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    let (status, page) = browser.get(&run).await;
    assert_eq!(status, 200);
    for expected in [
        r#"id="run-progress""#,
        r#"hx-trigger="every 1s""#,
        "accounts read",
        "findings so far",
        "/console/reconcile/resume",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    // Paused: the fragment says how far it got, and asks to be polled again.
    let progress = format!("{run}/progress");
    let (status, fragment) = browser.get(&progress).await;
    assert_eq!(status, 200);
    assert!(!fragment.contains("<html"), "a fragment: {fragment}");
    for expected in [
        r#"hx-trigger="every 1s""#,
        "</strong> accounts read, <strong>",
        "</strong> findings so far",
    ] {
        assert!(fragment.contains(expected), "{expected}: {fragment}");
    }

    let (status, _) = browser
        .post("/console/reconcile/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    let page = until_run_ends(&mut browser, &run).await;
    assert!(page.contains(r#"class="state finished""#), "{page}");
    assert!(!page.contains("run-progress"), "polling stops: {page}");
    // A poll that finds the run ended asks htmx to load the whole page again.
    let ended = browser
        .with_cookie(browser.client.get(format!("{}{progress}", synced.app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.headers()["hx-refresh"], "true");

    // Paused and cancelled: kept as cancelled.
    let (_, run) = browser.post("/console/reconcile", &start).await;
    browser
        .post("/console/reconcile/pause", &[("csrf", &csrf)])
        .await;
    let (status, _) = browser
        .post("/console/reconcile/cancel", &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    browser
        .post("/console/reconcile/cancel", &[("csrf", &csrf)])
        .await;
    let page = until_run_ends(&mut browser, &run).await;
    assert!(page.contains(r#"class="state cancelled""#), "{page}");

    // The admin API's signals are recorded with its client too.
    let response = synced
        .admin(reqwest::Method::POST, "/reconcile/resume")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (action, count) in [
        ("reconcile_pause", 2),
        ("reconcile_resume", 2),
        ("reconcile_cancel", 1),
    ] {
        let response = synced
            .admin(reqwest::Method::GET, &format!("/audit?action={action}"))
            .send()
            .await
            .unwrap();
        let audit: serde_json::Value = response.json().await.unwrap();
        let entries = audit["entries"].as_array().unwrap();
        assert_eq!(entries.len(), count, "{action}: {audit}");
        for entry in entries {
            assert!(
                entry["actor"].as_str().unwrap().starts_with("admin:"),
                "{entry}"
            );
        }
        let console_entry = entries.iter().find(|e| e["detail"]["run"].is_number());
        assert_eq!(
            console_entry.unwrap()["actor"],
            format!("admin:{who}"),
            "{audit}"
        );
    }
}

#[tokio::test]
async fn the_deliveries_page_lists_a_state_replays_a_targets_failures_and_shows_omissions() {
    let synced = SyncedApp::spawn_with(|settings| settings.fanout.max_attempts = 2).await;
    let appgate = synced.sandbox.emulator(&targets::appgate::VENDOR).unwrap();
    appgate.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    let created = synced.app.create_user(&user("listed")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.until_target("appgate", |t| t["dead"] == 1).await;
    synced.until_target("kibo", |t| t["delivered"] == 1).await;
    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);

    let (status, page) = browser.get("/console/deliveries").await;
    assert_eq!(status, 200);
    for expected in [
        r#"aria-current="page">Deliveries"#,
        "1 failed deliveries",
        &format!("/console/users/{id}"),
        r#"class="state dead""#,
        "Fields users are sent without",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let (_, page) = browser
        .get("/console/deliveries?state=delivered&target=kibo")
        .await;
    assert!(page.contains("1 delivered deliveries to kibo"), "{page}");
    let (status, page) = browser.get("/console/deliveries?state=bogus").await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown state bogus"), "{page}");
    let (status, _) = browser.get("/console/deliveries?target=nowhere").await;
    assert_eq!(status, 404);

    let (status, _) = browser
        .post("/console/deliveries/replay", &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    appgate.set_faults(Faults::default());
    let csrf = browser.csrf.clone();
    let (status, location) = browser
        .post(
            "/console/deliveries/replay",
            &[
                ("csrf", &csrf),
                ("target", "appgate"),
                ("dead_only", "true"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = browser.get(&location).await;
    assert!(page.contains("1 deliveries replayed"), "{page}");
    synced
        .until_target("appgate", |t| t["dead"] == 0 && t["delivered"] == 1)
        .await;
    let response = synced
        .admin(reqwest::Method::GET, "/audit?action=replay")
        .send()
        .await
        .unwrap();
    let audit: serde_json::Value = response.json().await.unwrap();
    assert_eq!(audit["entries"][0]["target"], "appgate", "{audit}");
    assert_eq!(audit["entries"][0]["detail"]["dead_only"], true, "{audit}");
}

/// A change arrives while the one before it is on its way to Kibo: once Kibo has answered,
/// a user's page shows the body Kibo got as Last delivered (not "not kept"), and the newer
/// change as Desired, pending.
#[tokio::test]
async fn a_users_page_shows_the_body_delivered_while_a_newer_change_came_in() {
    let synced = SyncedApp::spawn().await;
    let created = synced.app.create_user(&user("inflight")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    synced.settle(1).await;
    let rename = |given: &'static str| {
        let path = format!("/Users/{id}");
        let app = &synced.app;
        async move {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "name.givenName", "value": given}]
            });
            assert_eq!(app.patch(&path, &body).await.status(), 200);
        }
    };

    // Kibo now answers slowly enough for a second change to come in meanwhile (and within
    // the bridge's timeout for it).
    let kibo = synced.sandbox.emulator(&targets::kibo::VENDOR).unwrap();
    kibo.set_faults(Faults {
        latency_ms: 800,
        ..Faults::default()
    });
    let before = kibo.requests();
    rename("Second").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kibo.requests() == before {
        assert!(std::time::Instant::now() < deadline, "Kibo was never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Paused, so the newer change stays pending once the one in flight is answered.
    let paused = synced
        .admin(reqwest::Method::POST, "/targets/kibo/pause")
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_success());
    rename("Third").await;
    synced.app.planned().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = synced
            .admin(reqwest::Method::GET, &format!("/users/{id}"))
            .send()
            .await
            .unwrap();
        let status: serde_json::Value = status.json().await.unwrap();
        let delivered = status["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["target"] == "kibo" && a["outcome"] == "delivered")
            .count();
        if delivered == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Kibo's answer was never recorded: {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(kibo.accounts()[0].fields["firstName"], "Second");

    let mut browser = Browser::new(&synced.app);
    assert_eq!(browser.sign_in(ADMIN_TOKEN).await.status(), 303);
    let (status, page) = browser.get(&format!("/console/users/{id}")).await;
    assert_eq!(status, 200);
    let card = target_card(&page, "kibo");
    assert!(!card.contains("not kept"), "{card}");
    let given = card
        .split("<tr")
        .find(|row| row.contains("Third"))
        .unwrap_or_else(|| panic!("no row desires Third: {card}"));
    assert!(
        given.contains("Second"),
        "delivered beside desired: {given}"
    );
    assert!(given.contains("≠ desired (pending)"), "{given}");
}
