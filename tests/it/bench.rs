//! The load generator against a running bridge (`bench --url`), and the seeding that the
//! lookup-at-scale measurement uses. Small counts: this checks what the bench reports, not
//! how fast anything is.

use std::time::Duration;

use scim_bridge::bench::{self, BenchOptions};
use scim_bridge::ledger::{Db, DbOptions};

use crate::support::{json_of, TestApp, TOKEN};

fn options(url: String, users: usize) -> BenchOptions {
    BenchOptions {
        users,
        concurrency: 4,
        url: Some(url),
        token: Some(TOKEN.to_owned()),
        pause_deliveries: false,
        seed: 0,
        skip_patch: false,
        lookups_only: false,
        phase_limit: Duration::from_secs(60),
        target_concurrency: 4,
        shipped_pace: false,
        emulator_latency_ms: 0,
        sandbox_process: false,
    }
}

#[tokio::test]
async fn bench_against_a_running_bridge_creates_patches_and_finds_every_user() {
    let app = TestApp::spawn().await;
    let report = bench::run(options(app.url(""), 40)).await.unwrap();

    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "create (POST /Users)",
            "update (PATCH /Users/id)",
            "lookup (filter userName)"
        ]
    );
    for phase in &report.phases {
        assert_eq!(phase.requests, 40, "{}", phase.name);
        assert_eq!(phase.errors, 0, "{}", phase.name);
        assert!(phase.p50_ms <= phase.p99_ms && phase.p99_ms <= phase.max_ms);
    }
    // Nothing of its own to report on: no bridge process, no targets.
    assert!(report.targets.is_empty());
    assert_eq!(report.peak_rss_mib, None);
    assert_eq!(
        report.bridge_cpu_seconds, None,
        "not a bridge of the bench's own"
    );

    // The users are really there, patched.
    let filter = "/Users?filter=userName%20eq%20%22bench0000007%40example.com%22";
    let found = json_of(app.get(filter).await, 200).await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["displayName"], "Patched 7");
}

#[tokio::test]
async fn a_wrong_token_is_reported_as_failed_requests_not_as_a_rate() {
    let app = TestApp::spawn().await;
    let mut wrong = options(app.url(""), 5);
    wrong.token = Some("not-the-token".to_owned());
    wrong.skip_patch = true;
    let report = bench::run(wrong).await.unwrap();
    let create = &report.phases[0];
    assert_eq!((create.requests, create.errors), (0, 5));
    assert_eq!(create.per_second, 0.0);
}

#[tokio::test]
async fn lookups_only_needs_seeded_users() {
    let app = TestApp::spawn().await;
    let mut lookups = options(app.url(""), 5);
    lookups.lookups_only = true;
    let err = bench::run(lookups).await.unwrap_err();
    assert!(err.to_string().contains("--seed"), "{err}");
}

#[tokio::test]
async fn seeded_users_are_stored_and_found_by_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeded.db");
    bench::seed_users(&path, 2_500).await.unwrap();

    let db = Db::open(&DbOptions { path, readers: 1 }).unwrap();
    for n in [0, 1_234, 2_499] {
        let name = format!("seed{n:07}@example.com");
        let id = db
            .read(move |store| store.user_id_by_name(&name))
            .await
            .unwrap();
        assert!(id.is_some(), "seed user {n} is missing");
    }
    let past_the_end = db
        .read(|store| store.user_id_by_name("seed0002500@example.com"))
        .await
        .unwrap();
    assert_eq!(past_the_end, None);
}
