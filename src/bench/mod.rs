//! `scim-bridge bench`: a load generator that measures the bridge the way an operator would,
//! over loopback: SCIM creates, patches and lookups at a given concurrency, then the time
//! until every target holds every user. Every phase is bounded in count.

mod stats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ledger::{Db, DbOptions, Lookup, ResourceKind, ResourceRow};
pub use stats::PhaseReport;

const BENCH_TOKEN: &str = "bench-token";
const ADMIN_TOKEN: &str = "scim-bridge-admin-dev-token";
/// The longest the bench waits for deliveries to complete before reporting what it saw.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub users: usize,
    pub concurrency: usize,
    /// A running SCIM endpoint (`http://host:port/scim/v2`); without it the bench starts a
    /// bridge of its own with a temporary database.
    pub url: Option<String>,
    pub token: Option<String>,
    /// Pause every target first: measures how fast changes are taken in while targets lag.
    pub pause_deliveries: bool,
    /// Users written straight into the database before the bridge starts (lookup at scale).
    pub seed: usize,
    pub skip_patch: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub users: usize,
    pub concurrency: usize,
    pub seeded_users: usize,
    pub phases: Vec<PhaseReport>,
    /// Seconds from the first create until every target held every user (own bridge only).
    pub delivery_seconds: Option<f64>,
    pub users_delivered_per_second: Option<f64>,
    pub deliveries_per_target: Vec<(String, u64)>,
    pub peak_rss_mib: Option<f64>,
    pub database_mib: Option<f64>,
}

impl BenchReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "users {}  concurrency {}  seeded {}\n",
            self.users, self.concurrency, self.seeded_users
        );
        for phase in &self.phases {
            out.push_str(&phase.line());
            out.push('\n');
        }
        if let (Some(seconds), Some(rate)) =
            (self.delivery_seconds, self.users_delivered_per_second)
        {
            out.push_str(&format!(
                "all targets delivered      {seconds:.2} s ({rate:.0} users/s fully delivered)\n"
            ));
        }
        for (target, delivered) in &self.deliveries_per_target {
            let rate = self
                .delivery_seconds
                .map(|s| *delivered as f64 / s)
                .unwrap_or(0.0);
            out.push_str(&format!(
                "  {target:<12} {delivered:>8} delivered  {rate:>8.0}/s\n"
            ));
        }
        if let Some(rss) = self.peak_rss_mib {
            out.push_str(&format!("bridge peak RSS            {rss:.1} MiB\n"));
        }
        if let Some(db) = self.database_mib {
            out.push_str(&format!("database size              {db:.1} MiB\n"));
        }
        out
    }
}

/// The bridge under test, started as a child process so its memory is its own.
struct Bridge {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bridge {
    async fn start(seed: usize) -> anyhow::Result<Bridge> {
        let dir = tempfile::tempdir()?;
        let db_path = dir.path().join("bench.db");
        if seed > 0 {
            seed_users(&db_path, seed).await?;
        }
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(&db_path)
            .env("SCIM_BRIDGE_TOKEN", BENCH_TOKEN)
            .env("SCIM_BRIDGE__SCIM__REQUESTS_PER_SECOND", "1000000")
            .env(
                "SCIM_BRIDGE__FANOUT__KEY_FILE",
                dir.path().join("secret.key"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the bridge")?;
        let bridge = Bridge {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/healthz", bridge.base))
                .send()
                .await
                .is_ok()
            {
                return Ok(bridge);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the bridge did not become healthy")
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    fn database_mib(&self) -> f64 {
        ["bench.db", "bench.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.dir.path().join(f)).ok())
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
            .sum()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes `count` users straight into a fresh database, in large transactions.
pub async fn seed_users(path: &Path, count: usize) -> anyhow::Result<()> {
    let db = Db::open(&DbOptions {
        path: PathBuf::from(path),
        readers: 1,
    })?;
    const BATCH: usize = 10_000;
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH).min(count);
        db.write(move |store| {
            for n in start..end {
                let name = format!("seed{n:07}@example.com");
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name,
                    "name": {"givenName": "Seed", "familyName": format!("User{n}")},
                    "emails": [{"value": name, "type": "work", "primary": true}],
                    "active": true
                });
                let row = ResourceRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    version: 1,
                    created: "2026-01-01T00:00:00Z".into(),
                    last_modified: "2026-01-01T00:00:00Z".into(),
                    body: body.as_object().cloned().unwrap_or_default(),
                };
                let lookup = Lookup {
                    name: name.clone(),
                    external_id: None,
                    emails: vec![name],
                };
                store.insert(ResourceKind::User, &row, &lookup)?;
            }
            Ok::<_, crate::ledger::LedgerError>(())
        })
        .await?;
    }
    Ok(())
}

fn bench_user(n: usize) -> Value {
    let name = format!("bench{n:07}@example.com");
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": format!("ext-{n}"),
        "name": {"givenName": "Bench", "familyName": format!("User{n}")},
        "displayName": format!("Bench User {n}"),
        "emails": [{"value": name, "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 415 555 0100", "type": "mobile"}],
        "active": true
    })
}

/// Runs `count` requests at `concurrency`, returning latencies of successes and an error count.
async fn phase<F, Fut>(
    name: &str,
    count: usize,
    concurrency: usize,
    request: F,
) -> (PhaseReport, Vec<Option<Value>>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let started = Instant::now();
    let results: Vec<(Duration, Result<Value, String>)> = stream::iter(0..count)
        .map(|n| {
            let fut = request(n);
            async move {
                let began = Instant::now();
                let result = fut.await;
                (began.elapsed(), result)
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    let mut values = Vec::with_capacity(count);
    for (latency, result) in results {
        match result {
            Ok(value) => {
                latencies.push(latency);
                values.push(Some(value));
            }
            Err(err) => {
                if errors == 0 {
                    eprintln!("{name}: first error: {err}");
                }
                errors += 1;
                values.push(None);
            }
        }
    }
    (PhaseReport::new(name, latencies, errors, elapsed), values)
}

async fn send(request: reqwest::RequestBuilder, expect: u16) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != expect {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    let bridge = match &options.url {
        Some(_) => None,
        None => Some(Bridge::start(options.seed).await?),
    };
    let scim = match (&options.url, &bridge) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(bridge)) => format!("{}/scim/v2", bridge.base),
        (None, None) => anyhow::bail!("no bridge to measure"),
    };
    let token = options
        .token
        .clone()
        .unwrap_or_else(|| BENCH_TOKEN.to_owned());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let admin = bridge.as_ref().map(|b| format!("{}/admin", b.base));
    let targets = match &admin {
        Some(admin) => target_names(&client, admin).await?,
        None => Vec::new(),
    };
    if options.pause_deliveries {
        for target in &targets {
            if let Some(admin) = &admin {
                send(
                    client
                        .post(format!("{admin}/targets/{target}/pause"))
                        .bearer_auth(ADMIN_TOKEN),
                    200,
                )
                .await
                .map_err(anyhow::Error::msg)?;
            }
        }
    }

    let users = options.users;
    let concurrency = options.concurrency;
    let started = Instant::now();
    let (create, created) = phase("create (POST /Users)", users, concurrency, |n| {
        let request = client
            .post(format!("{scim}/Users"))
            .bearer_auth(&token)
            .header("Content-Type", "application/scim+json")
            .body(bench_user(n).to_string());
        send(request, 201)
    })
    .await;
    let ids: Arc<Vec<Option<String>>> = Arc::new(
        created
            .iter()
            .map(|v| v.as_ref().and_then(|v| v["id"].as_str()).map(str::to_owned))
            .collect(),
    );
    let mut phases = vec![create];

    if !options.skip_patch {
        let (patch, _) = phase("update (PATCH /Users/id)", users, concurrency, |n| {
            let ids = Arc::clone(&ids);
            let client = client.clone();
            let scim = scim.clone();
            let token = token.clone();
            async move {
                let Some(id) = ids.get(n).cloned().flatten() else {
                    return Err("the create failed".to_owned());
                };
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "displayName", "value": format!("Patched {n}")}]
                });
                send(
                    client
                        .patch(format!("{scim}/Users/{id}"))
                        .bearer_auth(&token)
                        .header("Content-Type", "application/scim+json")
                        .body(body.to_string()),
                    200,
                )
                .await
            }
        })
        .await;
        phases.push(patch);
    }

    let lookup_name = |n: usize| {
        if options.seed > 0 {
            format!("seed{:07}@example.com", (n * 7919) % options.seed)
        } else {
            format!("bench{n:07}@example.com")
        }
    };
    let (lookup, found) = phase("lookup (filter userName)", users, concurrency, |n| {
        let filter = format!("userName eq \"{}\"", lookup_name(n));
        send(
            client
                .get(format!("{scim}/Users"))
                .query(&[("filter", filter.as_str())])
                .bearer_auth(&token),
            200,
        )
    })
    .await;
    let misses = found
        .iter()
        .filter(|v| v.as_ref().is_some_and(|v| v["totalResults"] != 1))
        .count();
    anyhow::ensure!(misses == 0, "{misses} lookups did not find their user");
    phases.push(lookup);

    let mut report = BenchReport {
        users,
        concurrency,
        seeded_users: options.seed,
        phases,
        delivery_seconds: None,
        users_delivered_per_second: None,
        deliveries_per_target: Vec::new(),
        peak_rss_mib: None,
        database_mib: None,
    };
    if let (Some(bridge), Some(admin)) = (&bridge, &admin) {
        if !options.pause_deliveries && !targets.is_empty() {
            let delivered = wait_for_deliveries(&client, admin, users as u64).await?;
            let seconds = started.elapsed().as_secs_f64();
            report.delivery_seconds = Some(seconds);
            report.users_delivered_per_second = Some(users as f64 / seconds);
            report.deliveries_per_target = delivered;
        }
        report.peak_rss_mib = bridge.peak_rss_mib();
        report.database_mib = Some(bridge.database_mib());
    }
    Ok(report)
}

async fn target_names(client: &reqwest::Client, admin: &str) -> anyhow::Result<Vec<String>> {
    let body = send(
        client
            .get(format!("{admin}/targets"))
            .bearer_auth(ADMIN_TOKEN),
        200,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(body["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .filter_map(|t| t["target"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Polls the admin API until no target has anything pending; returns deliveries per target.
async fn wait_for_deliveries(
    client: &reqwest::Client,
    admin: &str,
    users: u64,
) -> anyhow::Result<Vec<(String, u64)>> {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let body = send(
            client
                .get(format!("{admin}/targets"))
                .bearer_auth(ADMIN_TOKEN),
            200,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let targets = body["targets"].as_array().cloned().unwrap_or_default();
        let outstanding: u64 = targets
            .iter()
            .map(|t| t["pending"].as_u64().unwrap_or(0) + t["retrying"].as_u64().unwrap_or(0))
            .sum();
        let all_there = targets.iter().all(|t| {
            t["delivered"].as_u64().unwrap_or(0)
                + t["rejected"].as_u64().unwrap_or(0)
                + t["dead"].as_u64().unwrap_or(0)
                >= users
        });
        if outstanding == 0 && all_there {
            return Ok(targets
                .iter()
                .map(|t| {
                    (
                        t["target"].as_str().unwrap_or_default().to_owned(),
                        t["delivered"].as_u64().unwrap_or(0),
                    )
                })
                .collect());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "deliveries did not complete within {DELIVERY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
