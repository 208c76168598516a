//! The ledger's SQLite setup (`src/ledger/sqlite/`: mimalloc as SQLite's allocator, the
//! wrapped page cache) in a process of its own, so that the ledger opens SQLite before
//! anything else does and both are in use (in `tests/it`, a test that opens a connection of
//! its own may come first).

// clippy.toml lets `#[test]` functions unwrap; the helpers they call are test code too.
#![allow(clippy::unwrap_used)]

use rusqlite::Connection;
use scim_bridge::ledger::{process_setup, Db, DbOptions, ProcessSetup};

#[test]
fn the_ledger_sets_sqlite_up_and_databases_stay_whole_through_growth_rollback_and_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(process_setup(), None);
    let db = Db::open(&DbOptions {
        path: dir.path().join("ledger.db"),
        readers: 1,
    })
    .unwrap();
    assert_eq!(
        process_setup(),
        Some(ProcessSetup {
            allocator: true,
            page_cache: true
        }),
        "Db::open sets SQLite up before its first connection"
    );
    drop(db);

    // Random keys in a WITHOUT ROWID table and an index: rebalances that renumber pages
    // through the spare key, on a small cache so that pages are also evicted.
    let conn = Connection::open(dir.path().join("work.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA cache_size = 64;
         CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL, pad TEXT NOT NULL) WITHOUT ROWID;
         CREATE INDEX t_v ON t(v);",
    )
    .unwrap();
    for start in (0..20_000).step_by(500) {
        insert(&conn, start..start + 500).commit().unwrap();
    }
    let pages = |conn: &Connection| -> i64 {
        conn.query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap()
    };
    let committed = pages(&conn);

    // A growth rolled back: the pages past the old end must leave the cache.
    let grown = insert(&conn, 20_000..30_000);
    assert!(pages(&grown) > committed + 100);
    grown.rollback().unwrap();
    assert_eq!(pages(&conn), committed);
    insert(&conn, 30_000..31_000).commit().unwrap();

    // A shrink: half the rows deleted, the file vacuumed, then written again.
    conn.execute("DELETE FROM t WHERE v % 2 = 0", []).unwrap();
    conn.execute_batch("VACUUM").unwrap();
    insert(&conn, 40_000..42_000).commit().unwrap();

    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let expected = (0..20_000u64)
        .chain(30_000..31_000)
        .filter(|i| (i * 7919 % 10_007) % 2 == 1)
        .count()
        + 2_000;
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows as usize, expected);
    let through_index: i64 = conn
        .query_row(
            "SELECT count(*) FROM t INDEXED BY t_v WHERE v >= 0",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(through_index, rows);
}

fn key(i: u64) -> String {
    format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Rows `range`, inserted in one transaction left open for the caller.
fn insert(conn: &Connection, range: std::ops::Range<u64>) -> rusqlite::Transaction<'_> {
    let tx = conn.unchecked_transaction().unwrap();
    for i in range {
        tx.execute(
            "INSERT INTO t (k, v, pad) VALUES (?1, ?2, ?3)",
            rusqlite::params![key(i), (i * 7919 % 10_007) as i64, "x".repeat(200)],
        )
        .unwrap();
    }
    tx
}
