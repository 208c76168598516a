//! Inbound side of the flow: the SCIM 2.0 service provider identity providers talk to.
//! `routes` is the HTTP surface, `service` the operations, and the remaining modules the
//! pure SCIM semantics (schemas, paths, filters, PATCH, projection) they share.

pub mod auth;
pub mod bulk;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod hook;
pub mod patch;
pub mod path;
pub mod projection;
pub mod request;
pub mod resource;
pub mod response;
pub mod routes;
pub mod schema;
pub mod service;
pub mod sort;
