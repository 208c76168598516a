#!/usr/bin/env bash
# Where the bridge's CPU goes during one `scim-bridge bench` run: `perf record` attached to
# the bench's bridge (`serve`) once it is up, then every sample sorted into one part of the
# flow by the first rule below that a frame of its stack matches. Prints each part's share
# of the samples, then the bench's report. The raw samples stay in OUT.data and OUT.txt.
#
#   scripts/profile-bridge.sh target/release/scim-bridge /tmp/profile --sandbox-process
#
# Every argument after the build and the output prefix goes to `scim-bridge bench`. Needs
# `perf` (Debian: linux-perf) and python3; perf slows the run, so its rates are not figures.
set -euo pipefail
# shellcheck source=lib/bench-bridge.sh
source "$(dirname "$0")/lib/bench-bridge.sh"

if (( $# < 2 )); then
    echo "usage: $0 BINARY OUT_PREFIX [bench arguments...]" >&2
    exit 2
fi
bin=$1 out=$2
shift 2
[[ -x "$bin" ]] || { echo "$bin: not an executable" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }

start_bench "$bin" "$out.report" "$@"
# Attached once every thread of the bridge exists: perf follows no thread started before.
sleep 0.6
perf record -F 499 --call-graph dwarf,16384 -o "$out.data" -p "$serve" 2>/dev/null &
recorder=$!
wait "$bench" || { echo "the bench failed:" >&2; cat "$out.report" >&2; exit 1; }
kill -INT "$recorder" 2>/dev/null || true
wait "$recorder" || true
perf script -i "$out.data" -F comm,tid,ip,sym >"$out.txt" 2>/dev/null

python3 - "$out.txt" <<'SPLIT'
import collections, sys

# First match wins, in this order: a commit inside an outcome's job counts as a commit.
PARTS = [
    ("commits and checkpoints (WAL writes)",
     ["sqlite3PagerCommitPhaseOne", "sqlite3BtreeCommitPhaseTwo", "sqlite3WalCheckpoint"]),
    ("due-list reads", ["Store>::due", "DueRows"]),
    ("recording outcomes", ["record_attempt", "erase_secret_if_delivered", "set_circuit"]),
    ("recording desired states", ["plan_marked", "clear_mark", "Planner::record"]),
    ("planner reads", ["stored_user", "Store>::marks"]),
    ("rendering mappings", ["Planner::render", "render_changed", "render_scoped"]),
    ("SCIM writes on the writer",
     ["scim::service::save", "store_change", "load_for_write"]),
    ("SCIM handlers (actix threads)", ["actix"]),
    ("HTTP client to the targets", ["targets::http", "reqwest", "hyper::"]),
    ("target adapters (payloads)", ["targets::"]),
    ("delivery worker", ["fanout::worker", "fanout::guard"]),
    ("writer loop (savepoints, jobs)", ["write_loop"]),
    ("runtime scheduling", ["tokio::runtime", "park", "futex", "schedule"]),
]

samples, stack = [], None
for line in open(sys.argv[1]):
    if not line.strip():
        if stack is not None:
            samples.append(stack)
        stack = None
    elif not line[0].isspace():
        stack = []
    elif stack is not None:
        frame = line.strip().split(None, 1)
        if len(frame) == 2:
            stack.append(frame[1])
if stack is not None:
    samples.append(stack)

shares = collections.Counter()
for frames in samples:
    part = next((name for name, marks in PARTS
                 if any(mark in frame for frame in frames for mark in marks)), "other")
    shares[part] += 1
total = max(len(samples), 1)
print(f"{len(samples)} samples of the bridge")
for name, count in shares.most_common():
    print(f"{100 * count / total:5.1f} %  {name}")
SPLIT
echo
cat "$out.report"
