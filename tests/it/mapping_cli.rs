//! `mappings check`, `preview` and `diff` as an admin runs them: on the shipped files and on
//! broken copies of them.

use std::path::Path;

use scim_bridge::mapping::commands;
use serde_json::json;

fn run_check(dir: &Path) -> (bool, String) {
    let mut out = Vec::new();
    let ok = commands::check(dir, &mut out).expect("the directory is readable");
    (ok, String::from_utf8(out).expect("utf-8"))
}

#[test]
fn the_shipped_mappings_pass_check() {
    let (ok, report) = run_check(Path::new("mappings"));
    assert!(ok, "{report}");
    assert!(
        report.contains("mappings/primavera.toml: ok (version "),
        "{report}"
    );
    assert!(report.ends_with("4 mapping files ok\n"), "{report}");
}

/// A copy of the shipped mappings with `edit` applied to `file`.
fn broken_copy(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir("mappings").expect("mappings/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name").to_owned();
        let mut text = std::fs::read_to_string(&path).expect("readable");
        if name == file {
            text = edit(text);
        }
        std::fs::write(dir.path().join(name), text).expect("writable");
    }
    dir
}

#[test]
fn check_reports_every_problem_with_its_place_and_a_hint() {
    let dir = broken_copy("kibo.toml", |text| {
        text.replace("emailAddress = {", "emialAddress = {")
            .replace(
                "isActive = { from = \"active\"",
                "isActive = { from = \"actve\"",
            )
            .replace("delete = \"disable\"", "delete = \"purge\"")
    });
    let (ok, report) = run_check(dir.path());
    assert!(!ok);
    let kibo = dir.path().join("kibo.toml");
    let kibo = kibo.display();
    let expected = [
        format!("{kibo}:26:10: error: 'delete' must be one of: disable, delete, ignore"),
        format!(
            "{kibo}:29:2: error: kibo requires 'emailAddress', but the mapping does not set it"
        ),
        format!(
            "{kibo}:33:1: error: kibo has no field 'emialAddress'\n   |\n33 | emialAddress = {{ \
             first_of"
        ),
        "   | ^^^^^^^^^^^^\n   = hint: did you mean 'emailAddress'?".to_owned(),
        format!(
            "{kibo}:57:21: error: 'actve' is not a SCIM attribute path: the SCIM User has no \
             attribute 'actve'\n   |\n57 | isActive = {{ from = \"actve\", transform = [{{ default \
             = true }}] }}\n   |                     ^^^^^^^\n   = hint: did you mean 'active'?"
        ),
    ];
    for block in expected {
        assert!(report.contains(&block), "missing:\n{block}\nin:\n{report}");
    }
    assert!(
        report.ends_with("3 ok, 1 with problems (4 in all)\n"),
        "{report}"
    );
}

fn run_preview(user: &serde_json::Value, target: Option<&str>) -> (bool, String) {
    let mut out = Vec::new();
    let ok = commands::preview(Path::new("mappings"), user, target, &mut out)
        .expect("the directory is readable");
    (ok, String::from_utf8(out).expect("utf-8"))
}

fn fixture(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("tests/golden/users/{name}.json")).expect("fixture");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn preview_shows_the_exact_body_with_the_password_redacted() {
    let mut user = fixture("okta");
    // An IdP's create carries the password; the preview must never print it.
    user["password"] = json!("t0p-s3cret!");
    let (ok, report) = run_preview(&user, Some("kibo"));
    assert!(ok, "{report}");
    assert!(!report.contains("t0p-s3cret!"), "{report}");
    assert!(
        report.starts_with("== kibo (mappings/kibo.toml, version "),
        "{report}"
    );
    let expected = "event: upsert (the user is active)\n\
                    scope: everyone (the file has no [scope])\n\
                    operation: upsert\n\
                    password: 'password' carries the SCIM password, sent on create and on update \
                    only when it changed\n";
    assert!(report.contains(expected), "{report}");
    let body_start = report.find("\n{\n").expect("a JSON body");
    let body: serde_json::Value =
        serde_json::from_str(&report[body_start..]).expect("the body is JSON");
    assert_eq!(
        body,
        json!({
            "emailAddress": "isaiah.langer@example.com",
            "userName": "isaiah.langer@example.com",
            "firstName": "Isaiah",
            "lastName": "Langer",
            "phoneNumber": "+4930901820",
            "externalId": "00u1a2b3c4d5e6f7g8h9",
            "localeCode": "de-DE",
            "isActive": true,
            // Isaiah is in neither Kibo role group: both managed roles are marked for removal.
            "roles": [{"roleId": 2, "action": "DELETE"}, {"roleId": 3, "action": "DELETE"}],
            "password": "<redacted: the SCIM password, if the IdP sent one>"
        })
    );
}

#[test]
fn preview_covers_every_target_and_says_why_a_user_is_refused() {
    let (ok, report) = run_preview(&fixture("minimal"), None);
    assert!(!ok, "a rejected target makes the preview fail");
    for target in ["appgate", "kibo", "primavera", "vikingcloud"] {
        assert!(report.contains(&format!("== {target} (")), "{report}");
    }
    assert!(
        report.contains(
            "rejected: primavera needs 'email', but this user has no value in any of \
             emails[primary eq true].value, emails[type eq \"work\"].value, emails.value or \
             userName (when userName co \"@\")"
        ),
        "{report}"
    );

    let (ok, report) = run_preview(&fixture("deactivated"), Some("primavera"));
    assert!(ok, "{report}");
    assert!(
        report.contains(
            "event: deactivated (the user has active = false)\n\
             scope: everyone (the file has no [scope])\n\
             operation: disable\n"
        ),
        "{report}"
    );
    assert!(report.contains("\"status\": \"INACTIVE\""), "{report}");

    let (ok, report) = run_preview(&fixture("okta"), Some("jira"));
    assert!(!ok);
    assert_eq!(
        report,
        "no mapping for target 'jira' in mappings; there are: appgate, kibo, primavera, vikingcloud\n"
    );
}

/// A store holding the Okta, Entra and non-Latin fixture users, created the way an IdP would.
async fn store_with_fixtures(dir: &Path) -> std::path::PathBuf {
    store_with_users(dir, &["okta", "entra", "non_latin"]).await
}

/// A store holding the named fixture users, created the way an IdP would.
async fn store_with_users(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    use scim_bridge::clock::SystemClock;
    use scim_bridge::ledger::{Db, DbOptions, ResourceKind};
    use scim_bridge::scim::service::ScimService;

    let path = dir.join("bridge.db");
    let db = Db::open(&DbOptions {
        path: path.clone(),
        readers: 1,
    })
    .expect("database");
    let service = ScimService::new(db, std::sync::Arc::new(SystemClock), None);
    for name in names {
        let mut user = fixture(name);
        if let Some(fields) = user.as_object_mut() {
            for assigned in ["id", "meta", "groups"] {
                fields.remove(assigned);
            }
        }
        service
            .create(ResourceKind::User, user)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    path
}

#[tokio::test]
async fn diff_summarises_what_a_mapping_change_would_do_to_stored_users() {
    let work = tempfile::tempdir().expect("temp dir");
    let db = store_with_fixtures(work.path()).await;
    // Two edits to Kibo: user names in upper case, and Okta's "de_DE" no longer rewritten.
    let new = broken_copy("kibo.toml", |text| {
        text.replace(
            "userName = \"userName\"",
            "userName = { from = \"userName\", transform = [\"upper\"] }",
        )
        .replace("{ replace = { find = \"_\", with = \"-\" } }, ", "")
    });

    let mut out = Vec::new();
    let ok = commands::diff(Path::new("mappings"), new.path(), &db, false, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(ok, "{report}");
    let lines: Vec<&str> = report.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "appgate: no change",
            "kibo: 3 of 3 users would change",
            "kibo: 1 user, field localeCode: 'de-DE' -> 'de'",
            "kibo: 3 users, field userName: 'adele.vance@contoso.example' -> \
             'ADELE.VANCE@CONTOSO.EXAMPLE' (1), 'isaiah.langer@example.com' -> \
             'ISAIAH.LANGER@EXAMPLE.COM' (1), 'yamada.taro@example.jp' -> \
             'YAMADA.TARO@EXAMPLE.JP' (1)",
            "primavera: no change",
            "vikingcloud: no change",
        ],
        "{report}"
    );

    let mut out = Vec::new();
    commands::diff(Path::new("mappings"), new.path(), &db, true, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(
        report.contains(
            "  isaiah.langer@example.com ("
        ) && report.contains(
            "): field localeCode 'de-DE' -> 'de'; field userName 'isaiah.langer@example.com' -> \
             'ISAIAH.LANGER@EXAMPLE.COM'\n"
        ),
        "{report}"
    );
}

#[tokio::test]
async fn diff_refuses_a_missing_store_and_invalid_mappings() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    let missing = work.path().join("none.db");
    let error = commands::diff(
        Path::new("mappings"),
        Path::new("mappings"),
        &missing,
        false,
        &mut out,
    )
    .await
    .expect_err("no store");
    assert!(error.to_string().contains("no database at"), "{error}");

    // Both headers misspelt alike: a `[fields.roles]` left under a misspelt `[fields]` trips
    // a different (and less clear) parse error, not the one this test is about.
    let broken = broken_copy("kibo.toml", |text| text.replace("[fields", "[feilds"));
    let ok = commands::diff(
        Path::new("mappings"),
        broken.path(),
        &missing,
        false,
        &mut out,
    )
    .await
    .expect("reported, not an error");
    assert!(!ok);
    let report = String::from_utf8(out).expect("utf-8");
    assert!(
        report.contains("unknown key 'feilds' in a mapping file"),
        "{report}"
    );
}

#[test]
fn preview_says_which_phone_region_was_used_and_why() {
    let (ok, report) = run_preview(&fixture("germany_okta"), Some("vikingcloud"));
    assert!(ok, "{report}");
    assert!(
        report.contains(
            "phone region: DE (the primary address's country is 'DE'); numbers written with a \
             +country code keep theirs\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("\"primaryPhone\": \"301234567\",\n  \"primaryPhoneCountryCode\": \"49\""),
        "{report}"
    );

    // Entra's form of a French locale, and no address.
    let (ok, report) = run_preview(&fixture("france_entra"), Some("primavera"));
    assert!(ok, "{report}");
    assert!(
        report.contains("phone region: FR (locale is 'fr-FR');"),
        "{report}"
    );
    assert!(report.contains("\"mobile\": \"+33612345678\""), "{report}");

    // Nothing to go by: the mapping's default.
    let mut user = fixture("france_entra");
    user["locale"] = json!("fr");
    user["phoneNumbers"] = json!([{"value": "(415) 555-0132", "type": "mobile"}]);
    let (_, report) = run_preview(&user, Some("appgate"));
    assert!(
        report.contains(
            "phone region: US (the mapping's default; the user has no address country and no \
             locale with a region)"
        ),
        "{report}"
    );
}

#[test]
fn preview_lists_what_a_user_is_sent_without() {
    let (ok, report) = run_preview(&fixture("garbage_mobile"), Some("primavera"));
    assert!(
        ok,
        "a user without an optional field is still sent: {report}"
    );
    assert!(
        report.contains(
            "warning: 'mobile' left out: 'n/a (ask reception)' is not a readable phone number\n"
        ),
        "{report}"
    );
    let body_start = report.find("\n{\n").expect("a JSON body");
    let body: serde_json::Value =
        serde_json::from_str(&report[body_start..]).expect("the body is JSON");
    assert!(body.get("mobile").is_none(), "{body}");
    assert_eq!(body["phone"], "+49307654321");
}

#[test]
fn check_warns_about_a_fixed_phone_region_in_a_file_that_maps_a_locale() {
    let dir = broken_copy("kibo.toml", |text| {
        text.replace(
            "phone_e164 = { region = \"user\", default = \"US\" }",
            "phone_e164 = \"US\"",
        )
    });
    let (ok, report) = run_check(dir.path());
    assert!(ok, "a warning does not fail the check: {report}");
    assert!(
        report.contains(
            ": warning: 'phone_e164' reads every number without a +country code as a US number, \
             but this file maps 'locale' (line 53): users elsewhere get wrong numbers or none\n"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "= hint: read each user's own region: { phone_e164 = { region = \"user\", default = \
             \"US\" } }"
        ),
        "{report}"
    );
    assert!(
        report.ends_with("4 mapping files ok; 1 warning\n"),
        "{report}"
    );
}

#[tokio::test]
async fn diff_shows_what_the_region_rules_change_and_counts_omissions() {
    let work = tempfile::tempdir().expect("temp dir");
    let db = store_with_users(
        work.path(),
        &["germany_okta", "france_entra", "garbage_mobile"],
    )
    .await;
    // The mappings as they were: every number without a country code read as a US number.
    let old = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir("mappings").expect("mappings/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path)
            .expect("readable")
            .replace("{ region = \"user\", default = \"US\" }", "\"US\"");
        std::fs::write(old.path().join(path.file_name().expect("name")), text).expect("write");
    }

    let mut out = Vec::new();
    let ok = commands::diff(old.path(), Path::new("mappings"), &db, false, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(ok, "{report}");
    for line in [
        "kibo: 3 of 3 users would change",
        "kibo: 3 users, field phoneNumber (phone region now the user's): '+10301234567' -> \
         '+49301234567' (1), '+10307654321' -> '+49307654321' (1), '+10612345678' -> \
         '+33612345678' (1)",
        // Read as a US number, '0151 23456789' had too many digits and was left out.
        "primavera: 2 users, field mobile (phone region now the user's): '+10612345678' -> \
         '+33612345678' (1), (not sent) -> '+4915123456789' (1)",
        "primavera: 1 user sent without mobile, e.g. 'n/a (ask reception)' is not a readable \
         phone number",
        "vikingcloud: 3 users, field primaryPhoneCountryCode (phone region now the user's): \
         '1' -> '49' (2), '1' -> '33' (1)",
    ] {
        assert!(report.contains(line), "missing:\n{line}\nin:\n{report}");
    }
}

/// `[scope] filter` added on top of the file's text.
fn with_scope(filter: &str) -> impl Fn(String) -> String + '_ {
    move |text| format!("[scope]\nfilter = '{filter}'\n\n{text}")
}

const DEPARTMENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";

#[test]
fn check_locates_a_scope_filter_problem_inside_the_filter() {
    let dir = broken_copy(
        "primavera.toml",
        with_scope(r#"groups[display eq "Primavera Schedulers"] and userTyp eq "Employee""#),
    );
    let (ok, report) = run_check(dir.path());
    assert!(!ok, "{report}");
    let primavera = dir.path().join("primavera.toml");
    let expected = format!(
        "{}:2:57: error: 'userTyp' is not a SCIM attribute path: the [scope] filter names an \
         unknown attribute\n  |\n2 | filter = 'groups[display eq \"Primavera Schedulers\"] and \
         userTyp eq \"Employee\"'\n  |                                                         \
         ^^^^^^^\n  = hint: did you mean 'userType'?",
        primavera.display()
    );
    assert!(
        report.contains(&expected),
        "missing:\n{expected}\nin:\n{report}"
    );
}

#[test]
fn preview_says_whether_the_user_is_in_scope_and_which_clause_failed() {
    let dir = broken_copy(
        "primavera.toml",
        with_scope(&format!(
            r#"groups[display eq "Primavera Schedulers"] or {DEPARTMENT} eq "Planning""#
        )),
    );
    let preview = |user: &serde_json::Value| {
        let mut out = Vec::new();
        let ok = commands::preview(dir.path(), user, Some("primavera"), &mut out)
            .expect("the directory is readable");
        (ok, String::from_utf8(out).expect("utf-8"))
    };
    // Adele (Entra) is in the Schedulers group; here in another one only.
    let mut staff = fixture("entra");
    staff["groups"] = json!([{"value": "g9", "display": "Staff"}]);
    let (ok, report) = preview(&staff);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!(
            "scope: out, [scope] filter 'groups[display eq \"Primavera Schedulers\"] or \
             {DEPARTMENT} eq \"Planning\"' does not match: 'groups[display eq \"Primavera \
             Schedulers\"]' does not hold; the user has groups.display = 'Staff'; '{DEPARTMENT} eq \
             \"Planning\"' does not hold; the user has {DEPARTMENT} = 'Retail'. Not created \
             here; an account the target already holds for the user gets what [deprovision] \
             out_of_scope says\noperation: disable\n"
        )),
        "{report}"
    );

    let (ok, report) = preview(&fixture("entra"));
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!(
            "scope: in (matches [scope] filter 'groups[display eq \"Primavera Schedulers\"] or \
             {DEPARTMENT} eq \"Planning\"')\noperation: upsert\n"
        )),
        "{report}"
    );
}

#[tokio::test]
async fn diff_counts_and_names_the_users_entering_and_leaving_a_scope() {
    let work = tempfile::tempdir().expect("temp dir");
    // Isaiah (Okta), Adele (Entra, department Retail) and Yamada (non-Latin).
    let db = store_with_fixtures(work.path()).await;
    let old = broken_copy(
        "primavera.toml",
        with_scope(&format!(r#"{DEPARTMENT} eq "Retail""#)),
    );
    let new = broken_copy("primavera.toml", |text| {
        with_scope(r#"userName ew "example.jp""#)(text).replace(
            "[deprovision]\n",
            "[deprovision]\nout_of_scope = \"delete\"\n",
        )
    });

    let mut out = Vec::new();
    let ok = commands::diff(old.path(), new.path(), &db, false, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(ok, "{report}");
    let lines: Vec<&str> = report.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "appgate: no change",
            "kibo: no change",
            // Isaiah is out of scope both times: Primavera is sent nothing new for him.
            "primavera: 2 of 3 users would change",
            "primavera: 1 user would enter scope: yamada.taro@example.jp",
            "primavera: 1 user would leave scope: adele.vance@contoso.example \
             (out_of_scope = \"delete\": deleted where primavera holds an account)",
            "vikingcloud: no change",
        ],
        "{report}"
    );

    let mut out = Vec::new();
    commands::diff(old.path(), new.path(), &db, true, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(report.contains("  yamada.taro@example.jp ("), "{report}");
    assert!(report.contains("): enters scope\n"), "{report}");
    assert!(
        report.contains(
            "): leaves scope ([scope] filter 'userName ew \"example.jp\"' does not match: \
             'userName ew \"example.jp\"' does not hold; the user has userName = \
             'adele.vance@contoso.example')\n"
        ),
        "{report}"
    );

    // From the shipped files (no scope) to a scope: everyone outside it leaves.
    let mut out = Vec::new();
    commands::diff(Path::new("mappings"), old.path(), &db, false, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(
        report.contains(
            "primavera: 2 users would leave scope: isaiah.langer@example.com, \
             yamada.taro@example.jp (out_of_scope = \"disable\": disabled where primavera \
             holds an account)\n"
        ),
        "{report}"
    );
}

#[test]
fn the_commented_scope_example_in_primavera_toml_is_valid_once_uncommented() {
    let dir = broken_copy("primavera.toml", |text| {
        let uncommented = text
            .replace("# [scope]\n", "[scope]\n")
            .replace("# filter = 'groups", "filter = 'groups")
            .replace("# out_of_scope = ", "out_of_scope = ");
        assert_ne!(uncommented, text, "the example is in the file");
        uncommented
    });
    let (ok, report) = run_check(dir.path());
    assert!(ok, "{report}");
    let mut in_group = fixture("entra");
    in_group["groups"] = json!([{"value": "g1", "display": "Primavera Portfolio Managers"}]);
    let mut out = Vec::new();
    commands::preview(dir.path(), &in_group, Some("primavera"), &mut out).expect("readable");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(
        report.contains("scope: in (matches [scope] filter"),
        "{report}"
    );
}

#[tokio::test]
async fn diff_counts_what_users_entering_a_scope_are_sent_without() {
    let work = tempfile::tempdir().expect("temp dir");
    let db = store_with_users(work.path(), &["garbage_mobile", "okta"]).await;
    let old = broken_copy("primavera.toml", with_scope(r#"userName eq "nobody""#));

    let mut out = Vec::new();
    let ok = commands::diff(old.path(), Path::new("mappings"), &db, false, &mut out)
        .await
        .expect("diff runs");
    let report = String::from_utf8(out).expect("utf-8");
    assert!(ok, "{report}");
    for line in [
        "primavera: 2 of 2 users would change\n",
        "primavera: 2 users would enter scope: ",
        "primavera: 1 user sent without mobile, e.g. 'n/a (ask reception)' is not a readable \
         phone number\n",
    ] {
        assert!(report.contains(line), "missing:\n{line}\nin:\n{report}");
    }
}
