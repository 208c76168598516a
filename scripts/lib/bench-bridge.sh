# Sourced by the scripts that watch one `scim-bridge bench` run from outside.
#
# start_bench BINARY REPORT [bench arguments...]: starts the bench in the background, its
# output to REPORT, and waits for the bridge it starts (its child run as `serve`). Sets
# `bench` and `serve` to their pids; exits with the report if no bridge came up.
start_bench() {
    local bin=$1 report=$2
    shift 2
    "$bin" bench "$@" >"$report" 2>&1 &
    bench=$!
    serve=""
    while [[ -z "$serve" ]] && kill -0 "$bench" 2>/dev/null; do
        serve=$(pgrep -P "$bench" -f ' serve ' | head -1 || true)
        sleep 0.05
    done
    [[ -n "$serve" ]] || { echo "the bench started no bridge:" >&2; cat "$report" >&2; exit 1; }
}
