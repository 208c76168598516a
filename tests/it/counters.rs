//! The delivery counters behind /metrics and the admin counts, after real deliveries and
//! after a `ledger replay` run from another process against the running bridge's database.

use std::collections::BTreeMap;

use scim_bridge::sandbox::Faults;
use scim_bridge::targets;

use crate::support::{user, SyncedApp};

const STATES: [&str; 6] = [
    "pending",
    "retrying",
    "delivered",
    "rejected",
    "dead",
    "held",
];

/// Every `scim_bridge_delivery_queue` sample of a scrape, by (target, state).
fn queue_gauges(metrics: &str) -> BTreeMap<(String, String), u64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("scim_bridge_delivery_queue{target=\""))
        .map(|rest| {
            let (target, rest) = rest.split_once("\",state=\"").unwrap();
            let (state, value) = rest.split_once("\"} ").unwrap();
            (
                (target.to_owned(), state.to_owned()),
                value.parse().unwrap(),
            )
        })
        .collect()
}

/// The same, counted row by row in the database file.
fn counted(db: &std::path::Path, targets: &[String]) -> BTreeMap<(String, String), u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut counts = BTreeMap::new();
    for target in targets {
        for state in STATES {
            let n: u64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE target = ?1 AND state = ?2",
                    [target.as_str(), state],
                    |row| row.get(0),
                )
                .unwrap();
            counts.insert((target.clone(), state.to_owned()), n);
        }
    }
    counts
}

#[tokio::test]
async fn metrics_count_what_the_ledger_holds_after_deliveries_failures_and_a_cli_replay() {
    let synced = SyncedApp::spawn_with(|settings| settings.fanout.max_attempts = 2).await;
    let app = &synced.app;
    let db = app.dir.path().join("bridge.db");
    let appgate = synced.sandbox.emulator(&targets::appgate::VENDOR).unwrap();
    appgate.set_faults(Faults {
        server_error_share: 1.0,
        ..Faults::default()
    });
    for n in 0..12 {
        app.create_user(&user(&format!("counted{n:02}"))).await;
    }
    synced.until_target("appgate", |t| t["dead"] == 12).await;
    for target in ["kibo", "primavera", "vikingcloud"] {
        synced.until_target(target, |t| t["delivered"] == 12).await;
    }
    let targets: Vec<String> = synced
        .lag()
        .await
        .iter()
        .map(|t| t["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets.len(), 4);

    let gauges = queue_gauges(&synced.metrics().await);
    assert_eq!(gauges, counted(&db, &targets));
    assert_eq!(gauges[&("appgate".to_owned(), "dead".to_owned())], 12);
    assert_eq!(gauges[&("kibo".to_owned(), "delivered".to_owned())], 12);

    // Fixed; the operator replays from the CLI, a process of its own writing the same file.
    appgate.set_faults(Faults::default());
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["ledger", "replay", "--target", "appgate", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    synced
        .until_target("appgate", |t| t["delivered"] == 12)
        .await;

    let gauges = queue_gauges(&synced.metrics().await);
    assert_eq!(gauges, counted(&db, &targets));
    assert_eq!(gauges[&("appgate".to_owned(), "dead".to_owned())], 0);
    assert_eq!(gauges[&("appgate".to_owned(), "delivered".to_owned())], 12);
}
