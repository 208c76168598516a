#!/usr/bin/env bash
# Runs the independent SCIM conformance suite (scim2-tester, via scim2-cli) against a freshly
# started bridge with a temporary database. Exits non-zero on any DEVIATION, ERROR or CRITICAL.
# Usage: scripts/conformance.sh [path/to/scim-bridge]
set -euo pipefail
cd "$(dirname "$0")/.."

SCIM2_TESTER_VERSION=0.5.2
SCIM2_CLI_VERSION=0.6.0

target_dir=$(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary=${1:-$target_dir/debug/scim-bridge}
[ -x "$binary" ] || cargo build --quiet
venv=$target_dir/conformance-venv
if [ ! -x "$venv/bin/scim2" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "scim2-tester==$SCIM2_TESTER_VERSION" "scim2-cli==$SCIM2_CLI_VERSION"
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=conformance-$RANDOM$RANDOM
SCIM_BRIDGE_TOKEN=$token "$binary" serve --listen "127.0.0.1:$port" --db "$work/bridge.db" \
  >"$work/bridge.log" 2>&1 &
bridge=$!
cleanup() { kill "$bridge" 2>/dev/null || true; wait "$bridge" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("the bridge did not become healthy")
PY

report=$work/report.txt
SCIM_CLI_HEADERS="Authorization: Bearer $token" \
  "$venv/bin/scim2" --url "http://127.0.0.1:$port/scim/v2" test >"$report" 2>&1 || true
if [ -n "${CONFORMANCE_REPORT:-}" ]; then cp "$report" "$CONFORMANCE_REPORT"; fi
if grep -Eq 'DEVIATION|ERROR|CRITICAL' "$report"; then
  # Each failing check with the lines that explain it.
  grep -E -A4 '^(DEVIATION|ERROR|CRITICAL)' "$report" >&2
  echo "conformance: FAILED: $(grep -Ec '^(DEVIATION|ERROR|CRITICAL)' "$report") checks failed," \
    "$(grep -c '^SUCCESS' "$report") succeeded" >&2
  exit 1
fi
grep -q 'SUCCESS' "$report" || { echo "conformance: the tester reported no result" >&2; exit 1; }
echo "conformance: passed: $(grep -c '^SUCCESS' "$report") checks succeeded, none failed"
