#!/usr/bin/env bash
# Side-by-side: the same create and userName-lookup load against the Python reference SCIM
# server (scim2-server, from PyPI, in a venv under the cargo target dir) and against
# scim-bridge, in the same run, alternating, RUNS times. Prints each run and the median ratio.
#
#   scripts/bench-peer.sh                      # 5,000 users at concurrency 64, 3 runs
#   USERS=2000 RUNS=5 scripts/bench-peer.sh
#
# The bridge runs with its deliveries live (the four sandbox targets receive every user while
# it is measured); the peer only stores. Everything stays on loopback.
set -euo pipefail

USERS=${USERS:-5000}
CONCURRENCY=${CONCURRENCY:-64}
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

for run in $(seq 1 "$RUNS"); do
    start_peer
    "$bridge" bench --url "$peer_url" --token "$PEER_TOKEN" --users "$USERS" \
        --concurrency "$CONCURRENCY" --skip-patch --json >"$out_dir/peer-$run.json"
    stop_peer
    "$bridge" bench --users "$USERS" --concurrency "$CONCURRENCY" --skip-patch --json \
        >"$out_dir/bridge-$run.json"
done

python3 - "$out_dir" "$RUNS" "$USERS" "$CONCURRENCY" "$PEER_VERSION" <<'EOF'
import json, statistics, sys

out_dir, runs, users, concurrency, version = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]

def phase(report, prefix):
    return next(p for p in report["phases"] if p["name"].startswith(prefix))

rows = {"create": [], "lookup": []}
print(f"{users} users, concurrency {concurrency}, scim2-server {version}")
for run in range(1, runs + 1):
    with open(f"{out_dir}/peer-{run}.json") as f:
        peer = json.load(f)
    with open(f"{out_dir}/bridge-{run}.json") as f:
        bridge = json.load(f)
    for name in rows:
        p, b = phase(peer, name), phase(bridge, name)
        for side, report in (("peer", p), ("bridge", b)):
            if report["errors"] or report["not_sent"]:
                sys.exit(f"run {run}: {side} {name}: {report['errors']} errors, "
                         f"{report['not_sent']} not sent")
        ratio = b["per_second"] / p["per_second"]
        rows[name].append(ratio)
        print(f"run {run} {name:<7} peer {p['per_second']:>8.0f}/s (p99 {p['p99_ms']:.1f} ms)"
              f"  bridge {b['per_second']:>8.0f}/s (p99 {b['p99_ms']:.1f} ms)  ratio {ratio:.1f}x")
for name, ratios in rows.items():
    print(f"{name:<7} ratio: median {statistics.median(ratios):.1f}x "
          f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)")
EOF
