//! Delivery of desired states to the targets: one worker per target, retries with backoff,
//! rate limits, dead letters, and passwords sealed until delivered.

pub mod backoff;
pub mod operator;
pub mod report;
pub mod secrets;
pub mod worker;
