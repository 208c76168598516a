#!/usr/bin/env bash
# The delivery side alone: how fast a build delivers users that are already planned.
# Starts the sandbox (`sandbox --no-vendor-rate-limits`) and a bridge (`serve --no-sandbox`)
# on a temporary database with the bench's settings, pauses every target, creates the users
# with `bench --url ... --skip-patch`, waits until every one is planned, then resumes the
# targets and times the wait until nothing is pending. Prints rows and users delivered per
# second, how busy the machine's cores were meanwhile, and the share of a core the bridge,
# its ledger writer and its checkpoint thread used (BENCHMARKS.md, "The delivery side
# alone").
#
#   scripts/bench-deliveries.sh target/release/scim-bridge [USERS]
#
# USERS defaults to 20000. Needs curl and python3; the emulators' ports (18441-18444) must
# be free. The admin API is polled with curl alone every 50 ms, so that the watching costs
# next to nothing.
set -euo pipefail

if (( $# < 1 )); then
    echo "usage: $0 BINARY [USERS]" >&2
    exit 2
fi
bin=$(realpath "$1")
users=${2:-20000}
[[ -x "$bin" ]] || { echo "$1: not an executable" >&2; exit 2; }
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin="http://127.0.0.1:$port/admin"
auth='Authorization: Bearer scim-bridge-admin-dev-token'
targets=(appgate kibo primavera vikingcloud)

# The bench's own settings: quotas lifted, so that the bridge sets the pace.
export RUST_LOG=warn SCIM_BRIDGE_TOKEN=bench-token
export SCIM_BRIDGE__SCIM__REQUESTS_PER_SECOND=1000000
export SCIM_BRIDGE__FANOUT__KEY_FILE=$work/secret.key
export SCIM_BRIDGE__SANDBOX__VENDOR_RATE_LIMITS=false
for target in "${targets[@]}"; do
    key=SCIM_BRIDGE__TARGETS__${target^^}
    export "${key}__RATE_LIMIT_PER_SECOND=100000" "${key}__CONCURRENCY=64"
done

"$bin" sandbox --no-vendor-rate-limits >"$work/sandbox.out" 2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q . "$work/sandbox.out" && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "the sandbox exited:" >&2; cat "$work/sandbox.log" >&2; exit 1; }
    sleep 0.1
done
"$bin" serve --no-sandbox --listen "127.0.0.1:$port" --db "$work/bridge.db" \
    >/dev/null 2>"$work/bridge.log" &
bridge=$!
pids+=("$bridge")
for _ in $(seq 100); do
    curl -sf -H "$auth" "$admin/targets" >/dev/null && break
    kill -0 "$bridge" 2>/dev/null || { echo "the bridge exited:" >&2; cat "$work/bridge.log" >&2; exit 1; }
    sleep 0.1
done
for target in "${targets[@]}"; do
    curl -sf -X POST -H "$auth" "$admin/targets/$target/pause" >/dev/null
done

echo "creating $users users with every target paused"
"$bin" bench --url "http://127.0.0.1:$port/scim/v2" --token bench-token --skip-patch \
    -n "$users" | grep -E '^(create|lookup)'
for _ in $(seq 6000); do
    curl -s -H "$auth" "$admin/targets" | grep -q '"planning":0[,}]' && break
    sleep 0.05
done
# A quiet second: the log folded back, as before any burst of deliveries.
sleep 1.5

# The CPU time (utime + stime, in ticks) in a /proc stat file.
cpu_ticks() {
    awk '{print $14 + $15}' "$1"
}
thread_ticks() {
    local name=$1
    local task
    task=$(grep -l "^$name" /proc/"$bridge"/task/*/comm | head -1)
    cpu_ticks "${task%/comm}/stat"
}
machine_ticks() {
    awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}
read -r idle0 total0 < <(machine_ticks)
writer0=$(thread_ticks ledger-writer)
checkpoint0=$(thread_ticks ledger-checkp)
bridge0=$(cpu_ticks "/proc/$bridge/stat")
began=$(date +%s.%N)
for target in "${targets[@]}"; do
    curl -sf -X POST -H "$auth" "$admin/targets/$target/resume" >/dev/null
done
echo "delivering"
for _ in $(seq 12000); do
    curl -s -H "$auth" "$admin/targets" | grep -o '"\(pending\|retrying\)":[0-9]*' \
        | grep -qv ':0$' || break
    sleep 0.05
done
ended=$(date +%s.%N)
read -r idle1 total1 < <(machine_ticks)
writer1=$(thread_ticks ledger-writer)
checkpoint1=$(thread_ticks ledger-checkp)
bridge1=$(cpu_ticks "/proc/$bridge/stat")
delivered=$(curl -s -H "$auth" "$admin/targets" \
    | python3 -c 'import json, sys; print(sum(t["delivered"] for t in json.load(sys.stdin)["targets"]))')

python3 - "$began" "$ended" "$delivered" "$users" "$(getconf CLK_TCK)" \
    "$idle0" "$total0" "$idle1" "$total1" "$writer0" "$writer1" \
    "$checkpoint0" "$checkpoint1" "$bridge0" "$bridge1" <<'REPORT'
import sys
began, ended = float(sys.argv[1]), float(sys.argv[2])
delivered, users, hz = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
idle0, total0, idle1, total1 = map(int, sys.argv[6:10])
writer0, writer1, ckpt0, ckpt1, bridge0, bridge1 = map(float, sys.argv[10:16])
took = ended - began
core = lambda before, after: 100 * (after - before) / hz / took
print(f"delivered {delivered} rows in {took:.2f} s: {delivered / took:.0f} rows/s, "
      f"{users / took:.0f} users/s")
print(f"machine busy {100 * (1 - (idle1 - idle0) / (total1 - total0)):.0f}% of its cores; "
      f"bridge {core(bridge0, bridge1):.0f}% of a core, its writer {core(writer0, writer1):.0f}%, "
      f"its checkpoint thread {core(ckpt0, ckpt1):.0f}%")
REPORT
