#!/usr/bin/env bash
# Side-by-side: the same create and userName-lookup load against the Python reference SCIM
# server (scim2-server, from PyPI, in a venv under the cargo target dir) and against
# scim-bridge, in the same run, alternating, RUNS times. Prints each run and the median ratios.
#
#   scripts/bench-peer.sh                      # 2,000 users, 3 runs
#   USERS=5000 RUNS=5 scripts/bench-peer.sh
#
# Each run measures three things, each on a fresh server:
#   - the peer at CONCURRENCY (64): the same load as the bridge. Its threaded server listens
#     with a backlog of 5, so at this concurrency connections wait for SYN retransmits (1 s,
#     then 3 s) and its rate collapses; each phase is cut at PEER_PHASE_LIMIT seconds and
#     the rate counts the requests answered by then;
#   - the peer at PEER_BEST_CONCURRENCY (4), where it does not collapse: the fairer ratio;
#   - the bridge at CONCURRENCY, with its deliveries to the four sandbox targets running
#     while it is measured (the peer only stores).
# Everything stays on loopback.
set -euo pipefail

USERS=${USERS:-2000}
CONCURRENCY=${CONCURRENCY:-64}
PEER_BEST_CONCURRENCY=${PEER_BEST_CONCURRENCY:-4}
PEER_PHASE_LIMIT=${PEER_PHASE_LIMIT:-30}
RUNS=${RUNS:-3}
PEER_VERSION=0.8.3
PEER_TOKEN=bench-peer-token

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
out_dir="$target_dir/bench-peer"
venv="$target_dir/bench-peer-venv"
mkdir -p "$out_dir"

if [[ ! -x "$venv/bin/scim2-server" ]] || ! "$venv/bin/pip" show scim2-server 2>/dev/null | grep -qx "Version: $PEER_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "scim2-server==$PEER_VERSION"
fi
cargo build --release --quiet
bridge="$target_dir/release/scim-bridge"

peer_pid=
stop_peer() {
    if [[ -n "$peer_pid" ]]; then
        kill "$peer_pid" 2>/dev/null || true
        wait "$peer_pid" 2>/dev/null || true
        peer_pid=
    fi
}
trap stop_peer EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A fresh peer per run, so each starts empty like the bridge's temporary database.
start_peer() {
    local port
    port=$(free_port)
    "$venv/bin/scim2-server" --hostname 127.0.0.1 --port "$port" --bearer-token "$PEER_TOKEN" \
        >"$out_dir/peer.log" 2>&1 &
    peer_pid=$!
    for _ in $(seq 1 100); do
        if python3 - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ServiceProviderConfig", timeout=1)
EOF
            peer_url="http://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    echo "scim2-server did not start:" >&2
    cat "$out_dir/peer.log" >&2
    return 1
}

measure_peer() {
    local concurrency=$1 file=$2
    start_peer
    "$bridge" bench --url "$peer_url" --token "$PEER_TOKEN" --users "$USERS" \
        --concurrency "$concurrency" --phase-limit-secs "$PEER_PHASE_LIMIT" --skip-patch \
        --json >"$file"
    stop_peer
}

for run in $(seq 1 "$RUNS"); do
    echo "run $run" >&2
    measure_peer "$CONCURRENCY" "$out_dir/peer-same-$run.json"
    measure_peer "$PEER_BEST_CONCURRENCY" "$out_dir/peer-best-$run.json"
    "$bridge" bench --users "$USERS" --concurrency "$CONCURRENCY" --skip-patch --json \
        >"$out_dir/bridge-$run.json"
done

python3 - "$out_dir" "$RUNS" "$USERS" "$CONCURRENCY" "$PEER_BEST_CONCURRENCY" "$PEER_VERSION" <<'EOF'
import json, statistics, sys

out_dir, runs, users, same, best, version = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]

def phase(report, prefix):
    return next(p for p in report["phases"] if p["name"].startswith(prefix))

def load(name, run):
    with open(f"{out_dir}/{name}-{run}.json") as f:
        return json.load(f)

print(f"{users} users per run, scim2-server {version}; bridge at concurrency {same}")
ratios = {}
for run in range(1, runs + 1):
    bridge = load("bridge", run)
    for name in ("create", "lookup"):
        b = phase(bridge, name)
        if b["errors"] or b["not_sent"]:
            sys.exit(f"run {run}: bridge {name}: {b['errors']} errors, {b['not_sent']} not sent")
        line = f"run {run} {name:<6} bridge {b['per_second']:>7.0f}/s (p99 {b['p99_ms']:.1f} ms)"
        for label, concurrency in (("peer-same", same), ("peer-best", best)):
            # The peer's failed requests (connections reset under load) are reported, and
            # count as not done: its rate is answered requests per second.
            p = phase(load(label, run), name)
            ratio = b["per_second"] / p["per_second"]
            ratios.setdefault((name, label, concurrency), []).append(ratio)
            line += (f" | peer c={concurrency} {p['per_second']:>6.0f}/s"
                     f" (p99 {p['p99_ms']:.0f} ms, {p['requests']} done, {p['errors']} failed)"
                     f" ratio {ratio:.0f}x")
        print(line)
for (name, label, concurrency), values in ratios.items():
    print(f"{name:<6} bridge / peer at concurrency {concurrency}: median "
          f"{statistics.median(values):.0f}x (min {min(values):.0f}x, max {max(values):.0f}x)")
EOF
