#!/usr/bin/env bash
# One `scim-bridge bench` run, watched through its bridge's admin API: every 0.7 s or so, the
# seconds since the bridge started, the rows every target holds as delivered, the rows
# waiting for a target (pending or retrying), and the users written in SCIM and not yet
# planned. Shows which phase of a run delivers what (BENCHMARKS.md, "How one run unfolds").
#
#   scripts/bench-watch.sh target/release/scim-bridge --sandbox-process
#
# Every argument after the build goes to `scim-bridge bench`. Needs curl and python3.
set -euo pipefail
# shellcheck source=lib/bench-bridge.sh
source "$(dirname "$0")/lib/bench-bridge.sh"

if (( $# < 1 )); then
    echo "usage: $0 BINARY [bench arguments...]" >&2
    exit 2
fi
bin=$1
shift
[[ -x "$bin" ]] || { echo "$bin: not an executable" >&2; exit 2; }
report=$(mktemp)
trap 'rm -f "$report"' EXIT

# The bench's own bridge listens on a port it chose.
start_bench "$bin" "$report" "$@"
listen=$(tr '\0' ' ' <"/proc/$serve/cmdline" | grep -o '127.0.0.1:[0-9]*')
started=$(date +%s.%N)

echo "seconds delivered waiting to-plan"
while kill -0 "$bench" 2>/dev/null; do
    curl -s -m 1 -H 'Authorization: Bearer scim-bridge-admin-dev-token' \
        "http://$listen/admin/targets" 2>/dev/null | python3 -c '
import json, sys, time
try:
    answer = json.load(sys.stdin)
except ValueError:
    sys.exit()
targets = answer["targets"]
delivered = sum(t["delivered"] for t in targets)
waiting = sum(t["pending"] + t["retrying"] for t in targets)
planning = answer["planning"]
print(f"{time.time() - float(sys.argv[1]):7.1f} {delivered:9d} {waiting:7d} {planning:7d}")
' "$started" || true
    sleep 0.5
done
wait "$bench" || { echo "the bench failed:" >&2; cat "$report" >&2; exit 1; }
cat "$report"
