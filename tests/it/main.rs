//! The one integration-test binary: the target compliance suite and the emulator tests,
//! all against sandbox emulators started on port 0.

mod sandbox_emulators;
mod support;
mod targets_compliance;
