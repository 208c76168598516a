//! Golden payloads: every fixture user in `tests/golden/users/` rendered through every shipped
//! mapping, compared with `tests/golden/<target>/<fixture>.json`.
//!
//! After an intended change to a mapping or the engine, rewrite the expected files with
//! `UPDATE_GOLDEN=1 cargo test --test it mapping_golden` and review the diff like code.

use std::path::{Path, PathBuf};

use scim_bridge::mapping::commands::{builtin_schemas, event_for};
use scim_bridge::mapping::{Event, MappingSet, Render};
use serde_json::{json, Value};

fn fixtures() -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = std::fs::read_dir("tests/golden/users")
        .expect("tests/golden/users")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("readable");
            (name, serde_json::from_str(&text).expect("fixture is JSON"))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The render as a reviewer wants to read it.
fn as_golden(event: Event, rendered: Render) -> Value {
    let event = match event {
        Event::Upsert => "upsert",
        Event::Deactivated => "deactivated",
        Event::Deleted => "deleted",
    };
    match rendered {
        Render::Send {
            operation,
            payload,
            create_only,
            password_field,
            hash,
            warnings,
            ..
        } => {
            let mut golden = json!({
                "event": event,
                "operation": operation.as_str(),
                "create_only": create_only,
                "password_field": password_field,
                "hash": hash,
                "payload": payload,
            });
            // Only where there are some, so a file without omissions reads as before.
            if !warnings.is_empty() {
                golden["warnings"] = json!(warnings);
            }
            golden
        }
        Render::Skip { reason } => json!({ "event": event, "skipped": reason }),
        Render::Rejected { reason } => json!({ "event": event, "rejected": reason }),
    }
}

#[test]
fn every_fixture_renders_as_recorded_for_every_target() {
    let mappings = MappingSet::load_dir(Path::new("mappings"), &builtin_schemas())
        .unwrap_or_else(|errors| panic!("shipped mappings are invalid: {errors:#?}"));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let users = fixtures();
    assert!(users.len() >= 7, "fixtures missing: {users:?}");
    let mut differences = Vec::new();
    for mapping in mappings.iter() {
        for (name, user) in &users {
            let (event, _) = event_for(user);
            let got = as_golden(event, mapping.render(user, event));
            let file: PathBuf = ["tests", "golden", mapping.target(), &format!("{name}.json")]
                .iter()
                .collect();
            let rendered = format!("{}\n", serde_json::to_string_pretty(&got).expect("JSON"));
            if update {
                std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                std::fs::write(&file, &rendered).expect("write golden file");
                continue;
            }
            match std::fs::read_to_string(&file) {
                Ok(expected) if expected == rendered => {}
                Ok(expected) => differences.push(format!(
                    "{}:\n--- expected\n{expected}+++ rendered\n{rendered}",
                    file.display()
                )),
                Err(_) => differences.push(format!("{} is missing", file.display())),
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{}\n\nIf the change is intended, run UPDATE_GOLDEN=1 cargo test --test it mapping_golden \
         and review the diff.",
        differences.join("\n")
    );
}
