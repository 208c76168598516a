//! Micro-benchmarks of the three pure steps every SCIM write or lookup goes through: parsing a
//! filter, applying a PATCH and rendering a user through each shipped mapping; and PATCH
//! requests of thousands of values, whose cost must grow linearly.
//!
//! `cargo bench --bench hot_paths`; figures and the machine they ran on are in BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

use scim_bridge::mapping::{commands::builtin_schemas, Event, MappingSet, ParsedPhones};
use scim_bridge::scim::patch::PatchOperation;
use scim_bridge::scim::path::parse_value_path;
use scim_bridge::scim::{filter, patch, schema::ResourceSchema};

/// The filters identity providers send, from the one Entra ID probes with to a compound one.
const FILTERS: &[(&str, &str)] = &[
    (
        "userName eq",
        r#"userName eq "adele.vance@contoso.example""#,
    ),
    (
        "externalId eq",
        r#"externalId eq "3d8b7a4e-90c2-4f6e-b1a1-2f5c9e0d4b77""#,
    ),
    (
        "compound",
        r#"(emails[type eq "work" and value co "@contoso"] or title sw "Retail") and not (active eq false) and meta.lastModified gt "2024-01-01T00:00:00Z""#,
    ),
];

fn fixture_user() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/users/entra.json"),
    )
    .expect("the Entra fixture user is readable");
    serde_json::from_str(&text).expect("the Entra fixture user is JSON")
}

fn filter_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter_parse");
    for (name, text) in FILTERS {
        group.bench_function(*name, |b| b.iter(|| filter::parse(black_box(text))));
    }
    group.finish();
}

fn patch_apply(c: &mut Criterion) {
    let schema = ResourceSchema::user();
    let user = fixture_user();
    let requests = [
        (
            "Entra replace active",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
            }),
        ),
        (
            "Okta replace without path",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {
                    "displayName": "Adele V.",
                    "name.familyName": "V.",
                    "title": "Store Manager"
                }}]
            }),
        ),
        (
            "value filter and extension",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "adele@contoso.example"},
                    {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Stores"},
                    {"op": "remove", "path": "phoneNumbers[type eq \"mobile\"]"}
                ]
            }),
        ),
    ];
    let mut group = c.benchmark_group("patch_apply");
    for (name, body) in &requests {
        let ops = patch::parse_request(body).expect("the benchmark's PATCH parses");
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                || user.clone(),
                |resource| patch::apply(resource, black_box(&ops), &schema),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// `add` of thousands of emails, as many operations or as one. The operations are built
/// directly, past the per-request limits, to show how the cost grows with their number.
fn patch_many(c: &mut Criterion) {
    let schema = ResourceSchema::user();
    let user = fixture_user();
    let emails = parse_value_path("emails").expect("a path");
    let email = |n: usize| json!({"value": format!("u{n}@example.com"), "type": "other"});
    let mut group = c.benchmark_group("patch_many");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    for count in [1_000, 5_000, 10_000] {
        let singles: Vec<PatchOperation> = (0..count)
            .map(|n| PatchOperation::Add {
                path: Some(emails.clone()),
                value: email(n),
            })
            .collect();
        group.bench_function(format!("{count} adds of one email"), |b| {
            b.iter_batched_ref(
                || user.clone(),
                |resource| patch::apply(resource, black_box(&singles), &schema),
                BatchSize::LargeInput,
            )
        });
        let one = [PatchOperation::Add {
            path: Some(emails.clone()),
            value: (0..count).map(email).collect(),
        }];
        group.bench_function(format!("one add of {count} emails"), |b| {
            b.iter_batched_ref(
                || user.clone(),
                |resource| patch::apply(resource, black_box(&one), &schema),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn mapping_render(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let set = MappingSet::load_dir(&dir, &builtin_schemas()).expect("the shipped mappings load");
    let user = fixture_user();
    let mut group = c.benchmark_group("mapping_render");
    for mapping in set.iter() {
        group.bench_function(mapping.target(), |b| {
            b.iter(|| mapping.render(black_box(&user), Event::Upsert))
        });
    }
    // What a SCIM write costs: every mapping, each phone number parsed once for all of them.
    group.bench_function("all four", |b| {
        b.iter(|| {
            let mut phones = ParsedPhones::default();
            set.iter()
                .map(|mapping| mapping.render_with(black_box(&user), Event::Upsert, &mut phones))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    filter_parse,
    patch_apply,
    patch_many,
    mapping_render
);
criterion_main!(benches);
