//! scim-bridge: accepts SCIM 2.0 users and groups from identity providers, maps each user per
//! target and delivers it to user APIs that do not speak SCIM, recording every step in a
//! SQLite ledger.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod fanout;
pub mod ledger;
pub mod mapping;
pub mod metrics;
pub mod reconcile;
pub mod sandbox;
pub mod scim;
pub mod startup;
pub mod targets;
pub mod telemetry;
