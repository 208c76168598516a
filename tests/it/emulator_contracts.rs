//! Each emulator's contract (its field table, written from the vendor's documentation)
//! against the schema the vendor's adapter declares. The two are written apart on purpose;
//! these tests fail on any difference in names, kinds, required flags, lengths, allowed
//! values or read/write direction: where the two disagree, one of them misread the
//! vendor's documentation, and that side is fixed.

use std::collections::BTreeMap;
use std::fmt::Debug;

use scim_bridge::sandbox::contract::{Contract, Field};
use scim_bridge::sandbox::{appgate, kibo, primavera, vikingcloud};
use scim_bridge::targets::{self, FieldSpec, TargetSchema};

/// One field as either side states it.
#[derive(Debug, PartialEq)]
struct Facts {
    kind: String,
    required_on_create: bool,
    required_on_update: bool,
    max_len: Option<usize>,
    allowed: Vec<&'static str>,
    write_only: bool,
    read_only: bool,
}

fn sorted(allowed: &[&'static str]) -> Vec<&'static str> {
    let mut allowed = allowed.to_vec();
    allowed.sort_unstable();
    allowed
}

fn adapter_facts(spec: &FieldSpec) -> Facts {
    Facts {
        kind: format!("{:?}", spec.kind),
        required_on_create: spec.required_on_create,
        required_on_update: spec.required_on_update,
        max_len: spec.max_len,
        allowed: sorted(spec.allowed),
        write_only: spec.write_only,
        read_only: spec.read_only,
    }
}

fn emulator_facts(field: &Field) -> Facts {
    Facts {
        kind: format!("{:?}", field.kind),
        required_on_create: field.required_on_create,
        required_on_update: field.required_on_update,
        max_len: field.max_len,
        allowed: sorted(field.allowed),
        write_only: field.write_only,
        read_only: field.read_only,
    }
}

/// A difference the comparison finds, as `(field, aspect)`, with both sides' values.
type Differences = BTreeMap<(&'static str, &'static str), String>;

fn differences(schema: &TargetSchema, contract: &Contract) -> Differences {
    let mut found = Differences::new();
    for spec in &schema.fields {
        if contract.field(spec.name).is_none() {
            found.insert((spec.name, "only in the adapter"), String::new());
        }
    }
    for field in contract.fields {
        let Some(spec) = schema.field(field.name) else {
            found.insert((field.name, "only in the emulator"), String::new());
            continue;
        };
        let (adapter, emulator) = (adapter_facts(spec), emulator_facts(field));
        let mut compare = |aspect, adapter: &dyn Debug, emulator: &dyn Debug| {
            let (adapter, emulator) = (format!("{adapter:?}"), format!("{emulator:?}"));
            if adapter != emulator {
                let values = format!("adapter {adapter}, emulator {emulator}");
                found.insert((field.name, aspect), values);
            }
        };
        compare("kind", &adapter.kind, &emulator.kind);
        compare(
            "required on create",
            &adapter.required_on_create,
            &emulator.required_on_create,
        );
        compare(
            "required on update",
            &adapter.required_on_update,
            &emulator.required_on_update,
        );
        compare("max length", &adapter.max_len, &emulator.max_len);
        compare("allowed values", &adapter.allowed, &emulator.allowed);
        compare("write-only", &adapter.write_only, &emulator.write_only);
        compare("read-only", &adapter.read_only, &emulator.read_only);
    }
    found
}

/// Fails on any difference, naming each with both sides' values.
fn assert_agree(schema: &TargetSchema, contract: &Contract) {
    let found: Vec<String> = differences(schema, contract)
        .into_iter()
        .map(|((field, aspect), values)| format!("{field}: {aspect} {values}"))
        .collect();
    assert!(
        found.is_empty(),
        "the adapter's schema and the emulator's contract differ: {found:#?}"
    );
}

#[test]
fn appgate_schema_matches_the_documented_local_user() {
    assert_agree(&targets::appgate::payload::schema(), &appgate::CONTRACT);
}

#[test]
fn vikingcloud_schema_matches_the_documented_user() {
    assert_agree(
        &targets::vikingcloud::payload::schema(),
        &vikingcloud::CONTRACT,
    );
}

#[test]
fn kibo_schema_matches_the_documented_admin_user() {
    assert_agree(&targets::kibo::payload::schema(), &kibo::CONTRACT);
}

#[test]
fn primavera_schema_matches_the_documented_user_input() {
    assert_agree(&targets::primavera::payload::schema(), &primavera::CONTRACT);
}

/// The comparison itself catches each kind of slip an adapter's schema could make.
#[test]
fn the_comparison_names_every_kind_of_difference() {
    let mut schema = targets::primavera::payload::schema();
    let mut title = schema.field("title").unwrap().clone();
    title.max_len = Some(30);
    title.required_on_create = true;
    let mut status = schema.field("status").unwrap().clone();
    status.allowed = &["ACTIVE"];
    schema
        .fields
        .retain(|spec| !["title", "status", "mobile"].contains(&spec.name));
    schema.fields.extend([title, status]);
    schema.fields.push(FieldSpec::optional(
        "department",
        targets::FieldKind::String,
    ));
    let found: Vec<_> = differences(&schema, &primavera::CONTRACT)
        .into_keys()
        .collect();
    assert_eq!(
        found,
        [
            ("department", "only in the adapter"),
            ("mobile", "only in the emulator"),
            ("status", "allowed values"),
            ("title", "max length"),
            ("title", "required on create"),
        ]
    );
}
