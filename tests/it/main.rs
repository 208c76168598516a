//! The one integration-test binary: the real server on port 0, a temporary database, and the
//! sandbox emulators on loopback.

// Test helpers outside `#[test]` functions may unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod scim_bulk;
mod scim_dialects;
mod scim_discovery;
mod scim_errors;
mod scim_groups;
mod scim_users;
mod support;
