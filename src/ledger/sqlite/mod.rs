//! How this process's SQLite is set up, once, before its first connection: the allocator
//! and no memory statistics (`allocator.rs`), and the page cache (`page_cache.rs`); and
//! the writer's count of the rows it changes (`row_counts.rs`). The
//! only code of the bridge that speaks to SQLite's C API directly, and so the only place
//! `unsafe` is allowed. How SQLite is compiled is set in `.cargo/config.toml`.
//!
//! SQLite takes these settings only before it is initialised, which its first connection
//! does. `Db::open` calls `configure_process` first; should SQLite already be running (a
//! tool or a test that opened a connection of its own first), its defaults stay, which is
//! only slower.

mod allocator;
mod page_cache;
mod row_counts;

pub(crate) use row_counts::{RowChanges, RowCounter};

use std::sync::OnceLock;

/// What `configure_process` put in place, once it has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSetup {
    /// mimalloc as SQLite's allocator, SQLite's memory statistics off.
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

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` compiles the bundled SQLite without the shared page cache
    /// group and its statistics: a build that lost the flags shows here.
    #[test]
    fn sqlite_is_built_without_its_process_wide_page_cache_locks() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        assert!(
            options.iter().all(|o| o != "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options
                .iter()
                .any(|o| o == "DISABLE_PAGECACHE_OVERFLOW_STATS"),
            "{options:?}"
        );
    }
}
