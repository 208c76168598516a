//! How this process's SQLite is set up, once, before its first connection: the allocator
//! (`allocator.rs`) and the page cache (`page_cache.rs`). The only code of the bridge that
//! speaks to SQLite's C API directly, and so the only place `unsafe` is allowed.
//!
//! SQLite takes these settings only before it is initialised, which its first connection
//! does. `Db::open` calls `configure_process` first; should SQLite already be running (a
//! tool or a test that opened a connection of its own first), its defaults stay, which is
//! only slower.

mod allocator;
mod page_cache;

use std::sync::OnceLock;

/// What `configure_process` put in place, once it has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSetup {
    pub allocator: bool,
    pub page_cache: bool,
}

static SETUP: OnceLock<ProcessSetup> = OnceLock::new();

/// Sets SQLite up for this process, the first time it is called; later calls answer what
/// the first one did.
pub(super) fn configure_process() -> ProcessSetup {
    *SETUP.get_or_init(|| ProcessSetup {
        allocator: allocator::install(),
        page_cache: page_cache::install(),
    })
}

/// What this process's SQLite runs with, `None` before the first `Db::open`.
pub fn process_setup() -> Option<ProcessSetup> {
    SETUP.get().copied()
}
