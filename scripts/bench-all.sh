#!/usr/bin/env bash
# Every load scenario of BENCHMARKS.md, RUNS times each (interleaved, so a noisy minute
# hurts every scenario alike), then the median, min and max of each figure.
#
#   scripts/bench-all.sh               # 3 runs of each scenario
#   RUNS=5 scripts/bench-all.sh
#
# Scenarios (all with the bridge started by `scim-bridge bench` on a temporary database
# and the sandbox targets on loopback):
#   accept     20,000 creates at concurrency 64, deliveries paused
#   e2e        20,000 creates + 20,000 patches + lookups, until the four targets hold every user
#   lookup10k  20,000 userName lookups with 10,000 users stored
#   lookup1m   20,000 userName lookups with 1,000,000 users stored
set -euo pipefail

RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
out_dir="$target_dir/bench-all"
mkdir -p "$out_dir"
cargo build --release --quiet
bridge="$target_dir/release/scim-bridge"

scenario() {
    case "$1" in
        accept) "$bridge" bench --pause-deliveries --skip-patch --json ;;
        e2e) "$bridge" bench --json ;;
        lookup10k) "$bridge" bench --seed 10000 --lookups-only --users 20000 --json ;;
        lookup1m) "$bridge" bench --seed 1000000 --lookups-only --users 20000 --json ;;
    esac
}

scenarios=(accept e2e lookup10k lookup1m)
for run in $(seq 1 "$RUNS"); do
    for name in "${scenarios[@]}"; do
        echo "run $run: $name" >&2
        scenario "$name" >"$out_dir/$name-$run.json"
    done
done

python3 - "$out_dir" "$RUNS" "$(nproc)" <<'EOF'
import json, statistics, sys

out_dir, runs, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def load(name):
    reports = []
    for run in range(1, runs + 1):
        with open(f"{out_dir}/{name}-{run}.json") as f:
            reports.append(json.load(f))
    return reports

def phase(report, prefix):
    return next(p for p in report["phases"] if p["name"].startswith(prefix))

def row(label, values, unit, digits=0):
    fmt = f"{{:,.{digits}f}}"
    med, lo, hi = statistics.median(values), min(values), max(values)
    print(f"| {label} | {fmt.format(med)} {unit} | {fmt.format(lo)} – {fmt.format(hi)} |")

for name in ("accept", "e2e", "lookup10k", "lookup1m"):
    for report in load(name):
        for p in report["phases"]:
            if p["errors"] or p["not_sent"]:
                sys.exit(f"{name}: {p['name']}: {p['errors']} errors, {p['not_sent']} not sent")

print(f"{runs} runs of each scenario, {cores} cores\n")
print("| figure | median | min – max |")
print("|---|---|---|")
accept = load("accept")
row("accept path: creates/s (deliveries paused)", [phase(r, "create")["per_second"] for r in accept], "/s")
row("accept path: create p50", [phase(r, "create")["p50_ms"] for r in accept], "ms", 1)
row("accept path: create p99", [phase(r, "create")["p99_ms"] for r in accept], "ms", 1)
row("accept path: create max", [phase(r, "create")["max_ms"] for r in accept], "ms", 1)
e2e = load("e2e")
row("end to end: creates/s (deliveries running)", [phase(r, "create")["per_second"] for r in e2e], "/s")
row("end to end: create p99", [phase(r, "create")["p99_ms"] for r in e2e], "ms", 1)
row("end to end: patches/s", [phase(r, "update")["per_second"] for r in e2e], "/s")
row("end to end: users fully delivered/s", [r["users_delivered_per_second"] for r in e2e], "/s")
row("end to end: seconds until every target held every user", [r["delivery_seconds"] for r in e2e], "s", 1)
for target in [t["target"] for t in e2e[0]["targets"]]:
    row(f"end to end: requests/s received by {target}",
        [next(t for t in r["targets"] if t["target"] == target)["requests_per_second"] for r in e2e], "/s")
row("end to end: bridge peak RSS (emulators included)", [r["peak_rss_mib"] for r in e2e], "MiB", 1)
row("end to end: database size", [r["database_mib"] for r in e2e], "MiB", 1)
small, large = load("lookup10k"), load("lookup1m")
small_rates = [phase(r, "lookup")["per_second"] for r in small]
large_rates = [phase(r, "lookup")["per_second"] for r in large]
row("lookup by userName, 10,000 users", small_rates, "/s")
row("lookup p99, 10,000 users", [phase(r, "lookup")["p99_ms"] for r in small], "ms", 1)
row("lookup by userName, 1,000,000 users", large_rates, "/s")
row("lookup p99, 1,000,000 users", [phase(r, "lookup")["p99_ms"] for r in large], "ms", 1)
row("lookup rate at 1M / at 10k (run by run)", [100 * l / s for s, l in zip(small_rates, large_rates)], "%")
row("bridge peak RSS with 1,000,000 users", [r["peak_rss_mib"] for r in large], "MiB", 1)
row("database size with 1,000,000 users", [r["database_mib"] for r in large], "MiB", 1)
row("seeding 1,000,000 users (not part of any rate)", [r["seed_seconds"] for r in large], "s", 1)
stolen = [r["cpu_stolen_percent"] for name in ("accept", "e2e", "lookup10k", "lookup1m")
          for r in load(name) if r.get("cpu_stolen_percent") is not None]
if stolen:
    row("CPU time stolen by the hypervisor, per run", stolen, "%", 1)
EOF
