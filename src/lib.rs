//! scim-bridge: accepts SCIM 2.0 users and groups from identity providers, maps each user per
//! target and delivers it to user APIs that do not speak SCIM, recording every step in a
//! SQLite ledger.

pub mod clock;
pub mod mapping;
pub mod sandbox;
pub mod scim;
pub mod targets;
