//! The operator's HTTP API under `/admin`, with its own bearer tokens: delivery state,
//! failures, replay, pause and resume.

mod error;
mod reload;
mod routes;

pub use error::AdminError;
pub use reload::{ReloadReport, Reloader};
pub use routes::{configure, parse_states, AdminAuth};
