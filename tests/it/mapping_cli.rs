//! `mappings check` and `mappings preview` as an admin runs them: on the shipped files and on
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
        format!("{kibo}:24:10: error: 'delete' must be one of: disable, delete, ignore"),
        format!(
            "{kibo}:27:2: error: kibo requires 'emailAddress', but the mapping does not set it"
        ),
        format!(
            "{kibo}:31:1: error: kibo has no field 'emialAddress'\n   |\n31 | emialAddress = {{ \
             first_of"
        ),
        "   | ^^^^^^^^^^^^\n   = hint: did you mean 'emailAddress'?".to_owned(),
        format!(
            "{kibo}:53:21: error: 'actve' is not a SCIM attribute path: the SCIM User has no \
             attribute 'actve'\n   |\n53 | isActive = {{ from = \"actve\", transform = [{{ default \
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
