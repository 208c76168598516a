#!/usr/bin/env bash
# Soak test of the fan-out under flapping targets. Not run by `cargo test` or CI.
#
#   scripts/soak.sh                    # 10 minutes of load and faults
#   SOAK_SECS=120 scripts/soak.sh      # shorter
#
# Builds the release binary, starts `scim-bridge serve` on a temporary database with the
# built-in sandbox emulators (loopback ports 18441-18444, which must be free), and for
# SOAK_SECS sends SCIM creates, patches and deletes while flipping each emulator's faults
# every FLIP_SECS between healthy, down (503), throttling without Retry-After and throttling
# with `Retry-After: 3` (PUT /_sandbox/faults). Then it heals every target, waits at most
# HEAL_SECS for the ledger to drain, and checks that:
#   - no delivery is dead or rejected, nothing is pending or retrying, every circuit is closed
#     (/admin/targets, and `scim-bridge ledger status --json` on the database file);
#   - every target holds every live SCIM user exactly once, with its latest first name and
#     active; a deleted user is gone (Appgate) or disabled (the others), never duplicated.
# Exits non-zero on any failure.
#
# Settings (environment):
#   SOAK_SECS=600          how long load and faults run
#   FLIP_SECS=15           how often each target's faults may change
#   SOAK_RATE=20           SCIM writes per second
#   HEAL_SECS=180          the longest wait for the ledger to drain after healing
#   SOAK_BACKOFF_CAP_MS=10000
#                          fanout.backoff_cap_ms of the bridge under test (the default 300000
#                          lets a probe wait five minutes after a long outage, longer than a
#                          short soak's heal wait); max_attempts stays at its default
#   SOAK_SEED              random seed of the load and the faults (default: the time)
set -euo pipefail

SOAK_SECS=${SOAK_SECS:-600}
FLIP_SECS=${FLIP_SECS:-15}
SOAK_RATE=${SOAK_RATE:-20}
HEAL_SECS=${HEAL_SECS:-180}
SOAK_BACKOFF_CAP_MS=${SOAK_BACKOFF_CAP_MS:-10000}
SOAK_SEED=${SOAK_SEED:-$(date +%s)}

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
echo "soak: building the release binary" >&2
cargo build --release --quiet
bridge="$target_dir/release/scim-bridge"

for port in 18441 18442 18443 18444; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "soak: port $port is in use (a sandbox already running?); stop it first" >&2
        exit 2
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/scim-bridge-soak.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="soak-token-$RANDOM$RANDOM"
bridge_pid=""

cleanup() {
    if [[ -n "$bridge_pid" ]] && kill -0 "$bridge_pid" 2>/dev/null; then
        kill -TERM "$bridge_pid" 2>/dev/null || true
        wait "$bridge_pid" 2>/dev/null || true
    fi
    echo "soak: bridge log and database kept in $work" >&2
}
trap cleanup EXIT

echo "soak: starting the bridge on 127.0.0.1:$port, database $work/soak.db" >&2
# The load deletes users by the thousand on purpose: the deprovisioning guard, which would
# hold them for an operator, is off here (tests/it/guard.rs covers it).
SCIM_BRIDGE__FANOUT__KEY_FILE="$work/secret.key" \
SCIM_BRIDGE__FANOUT__BACKOFF_CAP_MS="$SOAK_BACKOFF_CAP_MS" \
SCIM_BRIDGE__SANDBOX__START=true \
SCIM_BRIDGE__TARGETS__APPGATE__GUARD__ENABLED=false \
SCIM_BRIDGE__TARGETS__VIKINGCLOUD__GUARD__ENABLED=false \
SCIM_BRIDGE__TARGETS__KIBO__GUARD__ENABLED=false \
SCIM_BRIDGE__TARGETS__PRIMAVERA__GUARD__ENABLED=false \
    "$bridge" serve --listen "127.0.0.1:$port" --db "$work/soak.db" --token "$token" \
    >"$work/bridge.log" 2>&1 &
bridge_pid=$!

for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$bridge_pid" 2>/dev/null; then
        echo "soak: the bridge did not start:" >&2
        tail -20 "$work/bridge.log" >&2
        exit 2
    fi
    sleep 0.1
done

python3 - "$port" "$token" "$SOAK_SECS" "$FLIP_SECS" "$SOAK_RATE" "$HEAL_SECS" "$SOAK_SEED" \
    "$bridge" "$work/soak.db" <<'EOF'
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

port, token = sys.argv[1], sys.argv[2]
soak_secs, flip_secs, rate, heal_secs = (float(a) for a in sys.argv[3:7])
seed, bridge, db = int(sys.argv[7]), sys.argv[8], sys.argv[9]
rng = random.Random(seed)
scim = f"http://127.0.0.1:{port}/scim/v2"
admin = f"http://127.0.0.1:{port}/admin"
ADMIN_TOKEN = "scim-bridge-admin-dev-token"
EMULATORS = {
    "appgate": "http://127.0.0.1:18441",
    "vikingcloud": "http://127.0.0.1:18442",
    "kibo": "http://127.0.0.1:18443",
    "primavera": "http://127.0.0.1:18444",
}
FAULTS = {
    "healthy": {},
    "down": {"down": True},
    "throttle": {"throttle": True},
    "throttle+retry-after": {"throttle": True, "retry_after": "3"},
}
started = time.monotonic()


def log(message):
    print(f"soak: [{time.monotonic() - started:7.1f}s] {message}", flush=True)


def call(method, url, body=None, bearer=None, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def targets():
    status, body = call("GET", f"{admin}/targets", bearer=ADMIN_TOKEN)
    assert status == 200, (status, body)
    return {t["target"]: t for t in body["targets"]}


def summary(view):
    return "  ".join(
        f"{name}: {t['pending']}p/{t['retrying']}r/{t['dead']}d/{t['delivered']}ok "
        f"{t['circuit']['state']}"
        for name, t in sorted(view.items())
    )


def set_faults(name, mode):
    status, body = call("PUT", f"{EMULATORS[name]}/_sandbox/faults", FAULTS[mode])
    assert status == 200, (name, status, body)


users = {}  # id -> {"userName", "email", "given", "deleted"}
counts = {"create": 0, "patch": 0, "delete": 0}
errors = []
serial = 0


def live_ids():
    return [uid for uid, u in users.items() if not u["deleted"]]


def one_write():
    global serial
    live = live_ids()
    roll = rng.random()
    if len(live) < 30 or roll < 0.4:
        serial += 1
        name = f"soak{seed}-{serial:06d}"
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "name": {"givenName": "G0", "familyName": "Soak"},
            "emails": [{"value": f"{name}@example.com", "type": "work", "primary": True}],
            "active": True,
        }
        status, answer = call("POST", f"{scim}/Users", body, token, "application/scim+json")
        if status != 201:
            errors.append(("create", status, answer))
            return
        users[answer["id"]] = {"userName": name, "email": f"{name}@example.com",
                               "given": "G0", "deleted": False}
        counts["create"] += 1
    elif roll < 0.88:
        uid = rng.choice(live)
        given = f"G{rng.randrange(1_000_000)}"
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.givenName", "value": given}],
        }
        status, answer = call("PATCH", f"{scim}/Users/{uid}", body, token,
                              "application/scim+json")
        if status != 200:
            errors.append(("patch", status, answer))
            return
        users[uid]["given"] = given
        counts["patch"] += 1
    else:
        uid = rng.choice(live)
        status, answer = call("DELETE", f"{scim}/Users/{uid}", bearer=token)
        if status != 204:
            errors.append(("delete", status, answer))
            return
        users[uid]["deleted"] = True
        counts["delete"] += 1


# Load and faults.
modes = {name: "healthy" for name in EMULATORS}
flips = {mode: 0 for mode in FAULTS}
next_flip = time.monotonic()
next_report = time.monotonic() + 10
deadline = time.monotonic() + soak_secs
interval = 1.0 / rate
log(f"seed {seed}; {soak_secs:.0f} s of load at {rate:.0f} writes/s, faults flip every {flip_secs:.0f} s")
while time.monotonic() < deadline:
    now = time.monotonic()
    if now >= next_flip:
        for name in EMULATORS:
            mode = rng.choices(list(FAULTS), weights=[4, 2, 2, 2])[0]
            if mode != modes[name]:
                flips[mode] += 1
            modes[name] = mode
            set_faults(name, mode)
        log("faults: " + ", ".join(f"{n}={m}" for n, m in sorted(modes.items())))
        next_flip = now + flip_secs
    if now >= next_report:
        log(f"writes {counts}; {summary(targets())}")
        next_report = now + 10
    one_write()
    time.sleep(max(0.0, interval - (time.monotonic() - now)))

# Heal and wait, bounded.
for name in EMULATORS:
    set_faults(name, "healthy")
healed = time.monotonic()
log(f"load done: writes {counts}, errors {len(errors)}; every target healed")
while True:
    view = targets()
    if all(t["pending"] == 0 and t["retrying"] == 0 for t in view.values()):
        break
    if time.monotonic() - healed > heal_secs:
        log(f"FAIL: the ledger did not drain within {heal_secs:.0f} s: {summary(view)}")
        sys.exit(1)
    time.sleep(1)
drained = time.monotonic() - healed
log(f"drained {drained:.1f} s after healing: {summary(view)}")

failures = [f"SCIM write failed: {e}" for e in errors[:10]]
for name, t in sorted(view.items()):
    if t["dead"] or t["rejected"]:
        failures.append(f"{name}: {t['dead']} dead, {t['rejected']} rejected")
    if t["circuit"]["state"] != "closed":
        failures.append(f"{name}: circuit {t['circuit']}")
cli = subprocess.run([bridge, "ledger", "status", "--json", "--db", db],
                     capture_output=True, text=True, check=False)
if cli.returncode != 0:
    failures.append(f"ledger status failed: {cli.stderr.strip()}")
else:
    for t in json.loads(cli.stdout):
        if t["dead"] or t["pending"] or t["retrying"]:
            failures.append(f"ledger status: {t['target']}: {t}")

# What each target holds.
KEY = {"appgate": "name", "kibo": "emailAddress", "primavera": "email", "vikingcloud": "email"}
ACTIVE = {
    "appgate": lambda f: f.get("disabled") is False,
    "kibo": lambda f: f.get("isActive") is True,
    "primavera": lambda f: f.get("status") == "ACTIVE",
    "vikingcloud": lambda f: f.get("enabled") is True,
}
live = [u for u in users.values() if not u["deleted"]]
gone = [u for u in users.values() if u["deleted"]]
for name, origin in sorted(EMULATORS.items()):
    status, accounts = call("GET", f"{origin}/_sandbox/accounts")
    assert status == 200, (name, status)
    held = {}
    for account in accounts:
        if not account["deleted"]:
            held.setdefault(account["fields"].get(KEY[name]), []).append(account["fields"])
    key_of = (lambda u: u["userName"]) if name == "appgate" else (lambda u: u["email"])
    wrong = 0
    for u in live:
        found = held.get(key_of(u), [])
        if len(found) != 1 or found[0].get("firstName") != u["given"] or not ACTIVE[name](found[0]):
            wrong += 1
            if wrong <= 3:
                failures.append(f"{name}: live user {key_of(u)} (first name {u['given']}) held as {found}")
    for u in gone:
        found = held.get(key_of(u), [])
        if len(found) > (0 if name == "appgate" else 1) or any(ACTIVE[name](f) for f in found):
            wrong += 1
            if wrong <= 3:
                failures.append(f"{name}: deleted user {key_of(u)} held as {found}")
    ours = {key_of(u) for u in users.values()}
    strays = [k for k in held if k not in ours]
    if strays:
        failures.append(f"{name}: {len(strays)} accounts the bridge never made, e.g. {strays[:3]}")
    if wrong:
        failures.append(f"{name}: {wrong} users wrong")
    _, stats = call("GET", f"{origin}/_sandbox/stats")
    kept = sum(1 for u in gone if held.get(key_of(u)))
    log(f"{name}: holds {len(held)} accounts: {len(live)} live users, {kept} of the "
        f"{len(gone)} deleted ones disabled; {stats['requests']} API requests received")

log(f"fault periods entered: {flips}")
if failures:
    for failure in failures:
        log(f"FAIL: {failure}")
    sys.exit(1)
log(f"PASS: {len(live)} live users on every target exactly once, nothing dead")
EOF
