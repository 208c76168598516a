//! SQLite's own page cache, with one cost taken out of every commit.
//!
//! When a b-tree rebalance leaves its new pages out of order, SQLite swaps two page numbers
//! through a spare key, the lock-byte page's number (page 262,145 with 4 KiB pages), which
//! no database under 1 GiB reaches. The default cache keeps the largest key it has seen, so
//! at the end of that transaction it believes pages past the end of the file may be cached
//! and walks every hash bucket and every cached page to drop them, though there are none.
//! Under a stream of writes most commits rebalance some index, and the walk over the
//! writer's 16 MiB cache took up to a third of the writer's CPU (`BENCHMARKS.md`).
//!
//! This wrapper hands every call to the default cache and keeps its own largest key, which
//! ignores the spare key: a truncation past every page the cache really holds is then a
//! no-op, as it should be, and only a real truncation (a rolled-back growth, a `VACUUM`)
//! reaches the default cache's walk.
//!
//! Installed by `super::configure_process`, before SQLite's first connection.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// SQLite's default page cache, called by the wrapper. SQLite passes no context to
/// `xCreate`, so the default methods must be reachable from a plain function.
static DEFAULT: OnceLock<Methods> = OnceLock::new();

/// The methods table, made shareable: it only holds function pointers and SQLite's `pArg`,
/// which SQLite itself passes between threads.
struct Methods(ffi::sqlite3_pcache_methods2);

// SAFETY: the table is written once before it is shared and never mutated; its pointers
// are SQLite's own functions and argument, which SQLite calls from any thread.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

/// One cache: the default one's handle, and the largest page number it may hold.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The rebalance's spare page number for this cache's page size: one past the
    /// lock-byte page's offset, so past the end of any database under 1 GiB, and never
    /// the number of a page of any database.
    spare_key: c_uint,
    max_key: c_uint,
}

impl Cache {
    fn new(inner: *mut ffi::sqlite3_pcache, page_size: c_int) -> Cache {
        const PENDING_BYTE: c_uint = 0x4000_0000;
        Cache {
            inner,
            spare_key: PENDING_BYTE / c_uint::try_from(page_size.max(1)).unwrap_or(1) + 1,
            max_key: 0,
        }
    }

    /// Notes a page fetched at `key`.
    fn holds(&mut self, key: c_uint) {
        self.max_key = self.max_key.max(key);
    }

    /// Notes a page renumbered to `key`. A page moves through the spare key and on within
    /// one rebalance, before SQLite returns to its caller: it is never left to truncate.
    fn moved_to(&mut self, key: c_uint) {
        if key != self.spare_key {
            self.holds(key);
        }
    }

    /// Whether a truncation dropping pages from `limit` up can find any; if so, the cache
    /// holds none past `limit` afterwards.
    fn truncates(&mut self, limit: c_uint) -> bool {
        if limit > self.max_key {
            return false;
        }
        self.max_key = limit.saturating_sub(1);
        true
    }
}

/// Installs the wrapper as SQLite's page cache. Returns whether it is in place (false when
/// SQLite was already initialised). Called once per process.
pub(super) fn install() -> bool {
    let mut default = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
    // SAFETY: GETPCACHE2 writes the current methods into the pointed-to table; it
    // fails with SQLITE_MISUSE, writing nothing, once SQLite is initialised.
    let got = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, default.as_mut_ptr()) };
    if got != ffi::SQLITE_OK {
        return false;
    }
    // SAFETY: written by SQLite above.
    let default = unsafe { default.assume_init() };
    if default.xCreate.is_none() || DEFAULT.set(Methods(default)).is_err() {
        return false;
    }
    let wrapper = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        xCreate: Some(create),
        xCachesize: Some(cache_size),
        xPagecount: Some(page_count),
        xFetch: Some(fetch),
        xUnpin: Some(unpin),
        xRekey: Some(rekey),
        xTruncate: Some(truncate),
        xDestroy: Some(destroy),
        xShrink: Some(shrink),
    };
    // SAFETY: PCACHE2 copies the table; the functions it names live for the process.
    let set = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &wrapper) };
    set == ffi::SQLITE_OK
}

/// One of the default cache's methods. SQLite only calls the wrapper after `install` filled
/// `DEFAULT`, so `None` is only a method the default cache does not have.
fn default<T>(pick: impl Fn(&ffi::sqlite3_pcache_methods2) -> Option<T>) -> Option<T> {
    DEFAULT.get().and_then(|methods| pick(&methods.0))
}

/// # Safety
/// `cache` is a pointer `create` returned and `destroy` has not freed.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *(cache as *mut Cache)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    match default(|m| Some((m.xInit?, m.pArg))) {
        Some((f, arg)) => f(arg),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    if let Some((f, arg)) = default(|m| Some((m.xShutdown?, m.pArg))) {
        f(arg)
    }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = default(|m| m.xCreate) else {
        return std::ptr::null_mut();
    };
    let inner = create(page_size, extra, purgeable);
    if inner.is_null() {
        return inner;
    }
    Box::into_raw(Box::new(Cache::new(inner, page_size))) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cache_size(c: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(f) = default(|m| m.xCachesize) {
        f(cache(c).inner, pages)
    }
}

unsafe extern "C" fn page_count(c: *mut ffi::sqlite3_pcache) -> c_int {
    match default(|m| m.xPagecount) {
        Some(f) => f(cache(c).inner),
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    c: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = default(|m| m.xFetch) else {
        return std::ptr::null_mut();
    };
    let c = cache(c);
    let page = f(c.inner, key, create);
    if !page.is_null() {
        c.holds(key);
    }
    page
}

unsafe extern "C" fn unpin(
    c: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = default(|m| m.xUnpin) {
        f(cache(c).inner, page, discard)
    }
}

unsafe extern "C" fn rekey(
    c: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let Some(f) = default(|m| m.xRekey) else {
        return;
    };
    let c = cache(c);
    f(c.inner, page, old, new);
    c.moved_to(new);
}

unsafe extern "C" fn truncate(c: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let Some(f) = default(|m| m.xTruncate) else {
        return;
    };
    let c = cache(c);
    if c.truncates(limit) {
        f(c.inner, limit);
    }
}

unsafe extern "C" fn destroy(c: *mut ffi::sqlite3_pcache) {
    let c = Box::from_raw(c as *mut Cache);
    if let Some(f) = default(|m| m.xDestroy) {
        f(c.inner)
    }
}

unsafe extern "C" fn shrink(c: *mut ffi::sqlite3_pcache) {
    if let Some(f) = default(|m| m.xShrink) {
        f(cache(c).inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(std::ptr::null_mut(), 4096)
    }

    #[test]
    fn the_spare_key_is_the_page_after_the_lock_byte_for_each_page_size() {
        assert_eq!(cache().spare_key, 262_145);
        assert_eq!(Cache::new(std::ptr::null_mut(), 65_536).spare_key, 16_385);
        assert_eq!(Cache::new(std::ptr::null_mut(), 512).spare_key, 2_097_153);
    }

    #[test]
    fn a_swap_through_the_spare_key_leaves_nothing_to_truncate() {
        let mut cache = cache();
        cache.holds(1);
        cache.holds(300);
        // balance_nonroot swapping pages 120 and 90 through the spare key.
        cache.moved_to(262_145);
        cache.moved_to(120);
        cache.moved_to(90);
        // The commit truncates past the end of a 300-page file: nothing to walk for.
        assert!(!cache.truncates(301));
        assert_eq!(cache.max_key, 300);
    }

    #[test]
    fn a_rolled_back_growth_is_truncated_and_only_once() {
        let mut cache = cache();
        cache.holds(300);
        cache.holds(340);
        assert!(cache.truncates(301), "pages 301 to 340 must be dropped");
        assert_eq!(cache.max_key, 300);
        assert!(!cache.truncates(301));
        // A page renumbered past the end (an autovacuum move) is truncated too.
        cache.moved_to(305);
        assert!(cache.truncates(301));
        // Clearing the whole cache reaches the default cache whenever it holds a page.
        assert!(cache.truncates(1));
        assert!(!cache.truncates(1));
    }
}
