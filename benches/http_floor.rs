//! The CPU one HTTP exchange costs on this machine with the stack the bridge uses on both
//! ends (actix-web answering, reqwest asking, JSON bodies of a user's size, loopback): the
//! floor under any design that keeps the exchanges a delivered user needs. Both ends run in
//! this process, so its CPU time covers the client and the server, as the bench's machine
//! pays for both.
//!
//! `cargo bench --bench http_floor` (`FLOOR_REQUESTS` to change the count, 60,000 by default).

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

const CONCURRENCY: usize = 64;

fn main() {
    let requests: usize = std::env::var("FLOOR_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}/users", listener.local_addr().expect("address"));
    // The server on a system of its own, one worker, as each sandbox emulator runs.
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(|| App::new().route("/users", web::post().to(answer)))
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run()
                .await
                .expect("server");
        })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        exchange_all(&client, &url, 2_000).await; // connections opened, code paths warm
        let cpu_before = process_cpu();
        let started = Instant::now();
        exchange_all(&client, &url, requests).await;
        let wall = started.elapsed();
        let cpu = process_cpu() - cpu_before;
        let per_exchange = cpu.as_secs_f64() * 1e6 / requests as f64;
        println!(
            "{requests} exchanges at concurrency {CONCURRENCY}: {:.0}/s, CPU {:.2} s \
             (client and server), {per_exchange:.1} µs of CPU per exchange",
            requests as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64(),
        );
    });
}

/// Answers with the body it got and a server-assigned id, as a vendor's create does.
async fn answer(body: web::Json<Value>) -> HttpResponse {
    let mut user = body.into_inner();
    user["id"] = json!(uuid::Uuid::new_v4().to_string());
    HttpResponse::Ok().json(user)
}

async fn exchange_all(client: &reqwest::Client, url: &str, requests: usize) {
    let workers = (0..CONCURRENCY).map(|worker| {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move {
            for n in (worker..requests).step_by(CONCURRENCY) {
                let answer: Value = client
                    .post(&url)
                    .json(&user(n))
                    .send()
                    .await
                    .expect("send")
                    .error_for_status()
                    .expect("status")
                    .json()
                    .await
                    .expect("body");
                assert!(answer["id"].is_string());
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.expect("worker");
    }
}

/// A user about the size of what the bridge sends a target.
fn user(n: usize) -> Value {
    json!({
        "name": format!("user{n:06}"),
        "firstName": "Ana",
        "lastName": "Lima",
        "email": format!("user{n:06}@example.com"),
        "phone": "+351 912 345 678",
        "disabled": false,
        "tags": ["scim-bridge", "engineering"],
        "notes": "Provisioned from the identity provider",
        "password": "Correct-Horse-9",
    })
}

/// This process's CPU time (user and system) so far, from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces; the fields counted here follow its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports in USER_HZ, 100 per second on every architecture the bridge ships for.
    Duration::from_millis(ticks * 10)
}
