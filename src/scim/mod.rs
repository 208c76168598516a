//! Inbound side of the flow: the SCIM 2.0 service provider identity providers talk to.

pub mod error;
pub mod filter;
pub mod patch;
pub mod path;
pub mod projection;
pub mod resource;
pub mod schema;
pub mod sort;
