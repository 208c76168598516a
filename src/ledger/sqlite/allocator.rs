//! SQLite's memory allocations through mimalloc, the bridge's own allocator.
//!
//! SQLite allocates with the C library's `malloc` unless told otherwise: its page caches
//! (the readers' emptied at nearly every read, as a WAL reader drops its cache once another
//! connection has committed), the in-memory journal of each write's savepoint, its
//! statements' buffers. Under load glibc's allocator took about 6 % of the bridge's CPU
//! that way (`BENCHMARKS.md`), the cost mimalloc already took off the Rust side.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

use rusqlite::ffi;

/// Installs mimalloc as SQLite's allocator, and turns SQLite's memory statistics off: the
/// bridge reads none of them, and keeping them takes a process-wide mutex and a size
/// query around every allocation and every free (the writer's and every reader's alike).
/// Returns whether both are in place (false when SQLite was already initialised). Called
/// once per process.
pub(super) fn install() -> bool {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: MALLOC copies the table; the functions it names live for the process. It
    // fails with SQLITE_MISUSE, changing nothing, once SQLite is initialised.
    let malloc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods) };
    // SAFETY: MEMSTATUS takes one int; the same rule about initialisation holds.
    let memstatus = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
    malloc == ffi::SQLITE_OK && memstatus == ffi::SQLITE_OK
}

/// SQLite asks for sizes in `int`; it never asks for 0 or less.
fn bytes(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    libmimalloc_sys::mi_malloc(bytes(n))
}

unsafe extern "C" fn free(p: *mut c_void) {
    libmimalloc_sys::mi_free(p)
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    libmimalloc_sys::mi_realloc(p, bytes(n))
}

/// What SQLite may use of an allocation: mimalloc's usable size, at least what was asked.
unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    c_int::try_from(libmimalloc_sys::mi_usable_size(p)).unwrap_or(c_int::MAX)
}

/// The size an allocation of `n` takes: the next multiple of 8, as mimalloc hands out
/// (SQLite never asks within 8 bytes of `int`'s end; such a size is left as it is).
unsafe extern "C" fn roundup(n: c_int) -> c_int {
    n.checked_add(7).map_or(n, |up| up & !7)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_rounded_sized_and_grown_as_sqlite_expects() {
        // SAFETY: each pointer is used only while allocated, within its size.
        unsafe {
            assert_eq!(roundup(1), 8);
            assert_eq!(roundup(4096), 4096);
            assert_eq!(roundup(c_int::MAX), c_int::MAX);
            let p = malloc(100);
            assert!(!p.is_null());
            assert!(size(p) >= 100);
            p.cast::<u8>().write_bytes(0xAB, 100);
            let q = realloc(p, 10_000);
            assert!(size(q) >= 10_000);
            assert_eq!(
                q.cast::<u8>().add(99).read(),
                0xAB,
                "realloc keeps the contents"
            );
            free(q);
        }
    }
}
