#!/usr/bin/env bash
# Every load scenario of BENCHMARKS.md, RUNS times each (interleaved, so a noisy minute
# hurts every scenario alike), then the median, min and max of each figure.
#
#   scripts/bench-all.sh               # 3 runs of each scenario
#   RUNS=5 scripts/bench-all.sh
#   SCENARIOS="e2e e2e-sandbox" scripts/bench-all.sh   # only these
#   BRIDGE=/path/to/scim-bridge scripts/bench-all.sh   # a binary built elsewhere (no build)
#
# Scenarios (all with the bridge started by `scim-bridge bench` on a temporary database
# and the sandbox targets on loopback):
#   accept     20,000 creates at concurrency 64, deliveries paused
#   e2e        20,000 creates + 20,000 patches + lookups, until the four targets hold every user
#   e2e-sandbox  the same with the emulators in a `scim-bridge sandbox` process of their own
#              and the bridge as `serve --no-sandbox`: the bridge's peak RSS is its own
#   lookup10k  20,000 userName lookups with 10,000 users stored
#   lookup1m   20,000 userName lookups with 1,000,000 users stored
set -euo pipefail

RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
out_dir="$target_dir/bench-all"
mkdir -p "$out_dir"
if [[ -n "${BRIDGE:-}" ]]; then
    bridge=$BRIDGE
else
    cargo build --release --quiet
    bridge="$target_dir/release/scim-bridge"
fi

scenario() {
    case "$1" in
        accept) "$bridge" bench --pause-deliveries --skip-patch --json ;;
        e2e) "$bridge" bench --json ;;
        e2e-sandbox) "$bridge" bench --sandbox-process --json ;;
        lookup10k) "$bridge" bench --seed 10000 --lookups-only --users 20000 --json ;;
        lookup1m) "$bridge" bench --seed 1000000 --lookups-only --users 20000 --json ;;
    esac
}

read -r -a scenarios <<<"${SCENARIOS:-accept e2e e2e-sandbox lookup10k lookup1m}"
rm -f "$out_dir"/*.json
started=$(date -u +%H:%M)
for run in $(seq 1 "$RUNS"); do
    for name in "${scenarios[@]}"; do
        echo "run $run: $name ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1 /proc/loadavg))" >&2
        scenario "$name" >"$out_dir/$name-$run.json"
    done
done
ended=$(date -u +%H:%M)

python3 - "$out_dir" "$RUNS" "$(nproc)" "$started" "$ended" "$(git rev-parse --short HEAD)" "${scenarios[@]}" <<'EOF'
import json, statistics, sys

out_dir, runs, cores, started, ended, commit = sys.argv[1:7]
runs = int(runs)
scenarios = sys.argv[7:]

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

for name in scenarios:
    for report in load(name):
        for p in report["phases"]:
            if p["errors"] or p["not_sent"]:
                sys.exit(f"{name}: {p['name']}: {p['errors']} errors, {p['not_sent']} not sent")

def rows(label, values, unit, digits=0):
    values = [v for v in values if v is not None]
    if values:
        row(label, values, unit, digits)

print(f"{runs} runs of each scenario, {cores} cores, {started}-{ended} UTC, commit {commit}\n")
print("| figure | median | min – max |")
print("|---|---|---|")
every = [r for name in scenarios for r in load(name)]
rows("calibration at the start of each run (64 SHA-256 of 1 MiB)", [r.get("calibration_start_ms") for r in every], "ms", 1)
rows("calibration at the end of each run", [r.get("calibration_end_ms") for r in every], "ms", 1)
if "accept" in scenarios:
    accept = load("accept")
    row("accept path: creates/s (deliveries paused)", [phase(r, "create")["per_second"] for r in accept], "/s")
    row("accept path: create p50", [phase(r, "create")["p50_ms"] for r in accept], "ms", 1)
    row("accept path: create p99", [phase(r, "create")["p99_ms"] for r in accept], "ms", 1)
    row("accept path: create max", [phase(r, "create")["max_ms"] for r in accept], "ms", 1)
    rows("accept path: peak disk (database + WAL)", [r.get("peak_disk_mib") for r in accept], "MiB", 1)
    rows("accept path: checkpointed database", [r.get("checkpointed_mib") for r in accept], "MiB", 1)
    rows("accept path: peak disk / checkpointed", [r.get("peak_disk_ratio") for r in accept], "x", 2)
for name, label in (("e2e", "end to end"), ("e2e-sandbox", "end to end, emulators apart")):
    if name not in scenarios:
        continue
    e2e = load(name)
    row(f"{label}: creates/s (deliveries running)", [phase(r, "create")["per_second"] for r in e2e], "/s")
    row(f"{label}: create p99", [phase(r, "create")["p99_ms"] for r in e2e], "ms", 1)
    row(f"{label}: patches/s", [phase(r, "update")["per_second"] for r in e2e], "/s")
    row(f"{label}: users fully delivered/s", [r["users_delivered_per_second"] for r in e2e], "/s")
    row(f"{label}: seconds until every target held every user", [r["delivery_seconds"] for r in e2e], "s", 1)
    for target in [t["target"] for t in e2e[0]["targets"]]:
        row(f"{label}: requests/s received by {target}",
            [next(t for t in r["targets"] if t["target"] == target)["requests_per_second"] for r in e2e], "/s")
    whose = "bridge alone" if name == "e2e-sandbox" else "emulators included"
    row(f"{label}: bridge peak RSS ({whose})", [r["peak_rss_mib"] for r in e2e], "MiB", 1)
    rows(f"{label}: emulator process peak RSS", [r.get("sandbox_peak_rss_mib") for r in e2e], "MiB", 1)
    rows(f"{label}: bridge CPU per user ({whose})", [r.get("bridge_cpu_ms_per_user") for r in e2e], "ms", 2)
    rows(f"{label}: emulator process CPU", [r.get("sandbox_cpu_seconds") for r in e2e], "s", 1)
    rows(f"{label}: load generator CPU", [r.get("load_generator_cpu_seconds") for r in e2e], "s", 1)
    rows(f"{label}: machine busy until the last delivery", [r.get("machine_busy_percent") for r in e2e], "%", 0)
    rows(f"{label}: CPU-bound rate (every core busy)", [r.get("cpu_bound_users_per_second") for r in e2e], "/s")
    row(f"{label}: database size at the end, WAL included", [r["database_mib"] for r in e2e], "MiB", 1)
    rows(f"{label}: peak disk (database + WAL)", [r.get("peak_disk_mib") for r in e2e], "MiB", 1)
    rows(f"{label}: checkpointed database", [r.get("checkpointed_mib") for r in e2e], "MiB", 1)
    rows(f"{label}: peak disk / checkpointed", [r.get("peak_disk_ratio") for r in e2e], "x", 2)
small = load("lookup10k") if "lookup10k" in scenarios else None
large = load("lookup1m") if "lookup1m" in scenarios else None
if small:
    small_rates = [phase(r, "lookup")["per_second"] for r in small]
    row("lookup by userName, 10,000 users", small_rates, "/s")
    row("lookup p99, 10,000 users", [phase(r, "lookup")["p99_ms"] for r in small], "ms", 1)
if large:
    large_rates = [phase(r, "lookup")["per_second"] for r in large]
    row("lookup by userName, 1,000,000 users", large_rates, "/s")
    row("lookup p99, 1,000,000 users", [phase(r, "lookup")["p99_ms"] for r in large], "ms", 1)
    if small:
        row("lookup rate at 1M / at 10k (run by run)", [100 * l / s for s, l in zip(small_rates, large_rates)], "%")
    row("bridge peak RSS with 1,000,000 users", [r["peak_rss_mib"] for r in large], "MiB", 1)
    row("database size with 1,000,000 users", [r["database_mib"] for r in large], "MiB", 1)
    row("seeding 1,000,000 users (not part of any rate)", [r["seed_seconds"] for r in large], "s", 1)
stolen = [r["cpu_stolen_percent"] for r in every if r.get("cpu_stolen_percent") is not None]
if stolen:
    row("CPU time stolen by the hypervisor, per run", stolen, "%", 1)
load_avg = [r["load_before"] for r in every if r.get("load_before") is not None]
if load_avg:
    row("load average (1 min) when each run started", load_avg, "", 2)
EOF
