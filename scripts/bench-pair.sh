#!/usr/bin/env bash
# Two builds of the bridge in turn, N times each, so that both meet the same minutes of a
# shared machine: the only fair way to judge a change here (see BENCHMARKS.md, "The
# machine"). One line per run: the hour, the build, users fully delivered per second,
# creates and patches per second and their p99 (patches `-` with --skip-patch), the CPU
# time of the bridge process (`serve`, read from /proc every 0.2 s), how busy the machine's
# cores were until the last delivery, its peak RSS, the calibration and the load average.
# At the end, the change pair by pair in users/s and in the bridge's CPU.
#
#   scripts/bench-pair.sh 3 /tmp/old-scim-bridge target/release/scim-bridge --sandbox-process
#   scripts/bench-pair.sh 5 OLD NEW --pause-deliveries --skip-patch
#
# Every argument after the two builds goes to `scim-bridge bench`.
set -euo pipefail

if (( $# < 3 )); then
    echo "usage: $0 N OLD_BINARY NEW_BINARY [bench arguments...]" >&2
    exit 2
fi
runs=$1 old=$2 new=$3
shift 3
for bin in "$old" "$new"; do
    [[ -x "$bin" ]] || { echo "$bin: not an executable" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ticks_per_second=$(getconf CLK_TCK)

one_run() {
    local bin=$1 label=$2
    shift 2
    "$bin" bench "$@" >"$out/report.txt" 2>&1 &
    local bench=$! serve_ticks=0
    while kill -0 "$bench" 2>/dev/null; do
        # The bridge is the bench's child started as `serve`; its CPU time is utime+stime.
        for pid in $(pgrep -P "$bench" -f ' serve ' || true); do
            local ticks
            ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
            (( ticks > serve_ticks )) && serve_ticks=$ticks
        done
        sleep 0.2
    done
    wait "$bench" || { echo "$label: the bench failed:" >&2; cat "$out/report.txt" >&2; exit 1; }
    local delivered creates patches cal rss
    delivered=$(grep -o '([0-9]* users/s' "$out/report.txt" | tr -d '(' || echo '-')
    creates=$(awk '/^create \(POST/ {print $8, "p99", $13, "ms"}' "$out/report.txt")
    patches=$(awk '/^update \(PATCH/ {print $8, "p99", $13, "ms"}' "$out/report.txt")
    cal=$(awk '/^calibration/ {print $2}' "$out/report.txt")
    rss=$(awk '/bridge peak RSS/ {print $4}' "$out/report.txt")
    busy=$(awk '/^machine busy/ {print $3}' "$out/report.txt")
    local cpu
    cpu=$(awk -v t="$serve_ticks" -v hz="$ticks_per_second" 'BEGIN {print t / hz}')
    echo "$label ${delivered%% *} $cpu" >>"$out/runs.txt"
    printf '%s %-4s %-16s creates %-22s patches %-22s bridge CPU %5.1f s  busy %-4s RSS %s MiB  calibration %s ms  load %s\n' \
        "$(date -u +%H:%M:%S)" "$label" "${delivered:--}" "$creates" "${patches:--}" \
        "$cpu" "${busy:--}" "$rss" "$cal" "$(cut -d' ' -f1 /proc/loadavg)"
}

for _ in $(seq "$runs"); do
    one_run "$old" old "$@"
    one_run "$new" new "$@"
done

# Pair by pair (each new run against the old one just before it): the change in users
# delivered per second and in the bridge's CPU, as the median and the range over the pairs.
# A change smaller than that range is not told apart from the machine's noise.
python3 - "$out/runs.txt" <<'SUMMARY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
old = [r for r in runs if r[0] == "old"]
new = [r for r in runs if r[0] == "new"]
def change(index):
    pairs = [(float(o[index]), float(n[index])) for o, n in zip(old, new)
             if o[index] != "-" and n[index] != "-" and float(o[index]) > 0]
    return [100.0 * (n - o) / o for o, n in pairs]
for name, index in (("users delivered/s", 1), ("bridge CPU", 2)):
    values = change(index)
    if values:
        print(f"new against old, {name}: median {statistics.median(values):+.1f} %, "
              f"pairs {min(values):+.1f} % to {max(values):+.1f} % ({len(values)} pairs)")
SUMMARY
