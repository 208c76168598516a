//! The operator's HTTP API under `/admin`, with its own bearer tokens: delivery state,
//! failures, replay, pause and resume.

mod error;
mod reload;
mod routes;

pub(crate) use error::AdminError;
pub(crate) use reload::Reloader;
pub(crate) use routes::{configure, parse_states, AdminAuth};
