//! The one integration-test binary: the target compliance suite and the emulator tests,
//! all against sandbox emulators started on port 0.

// clippy.toml lets `#[test]` functions unwrap; the helpers they call are test code too.
#![allow(clippy::unwrap_used)]

mod sandbox_emulators;
mod support;
mod targets_compliance;
