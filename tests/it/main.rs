//! The integration tests: the real server on port 0 with a temporary database, the target
//! compliance suite and the emulator tests, all against sandbox emulators on loopback. One
//! binary, linked once; only `tests/sqlite_setup.rs` has its own process, as it must be the
//! first to open SQLite.

// clippy.toml lets `#[test]` functions unwrap; the helpers they call are test code too.
#![allow(clippy::unwrap_used)]

mod adoption;
mod audit;
mod bench;
mod console;
mod console_browser;
mod console_scale;
mod counters;
mod crash;
mod emulator_contracts;
mod fanout;
mod guard;
mod hostile_input;
mod mapping_cli;
mod mapping_golden;
mod mapping_regions;
mod ops_security;
mod ops_storage;
mod reconcile;
mod sandbox_emulators;
mod scim_bulk;
mod scim_dialects;
mod scim_discovery;
mod scim_errors;
mod scim_groups;
mod scim_users;
mod scoping;
mod support;
mod targets_compliance;
