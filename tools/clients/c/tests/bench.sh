#!/usr/bin/env bash
# Throughput of libfjord against a real broker over TLS (not a test: prints figures).
#
#   FJORD_BIN=/work/bin/fjord-release bash tools/clients/c/tests/bench.sh [RECORDS] [RUNS] [VALUE_BYTES]
#
# Starts `fjord serve` (TLS, development CA, 127.0.0.1, ephemeral port), runs build/bench RUNS
# times (default 5; a new topic each run; RECORDS default 2000000 of VALUE_BYTES default 100) and
# prints each run's produce and consume records/s and their medians.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${FJORD_BIN:?set FJORD_BIN to the fjord broker executable}"
records=${1:-2000000}
runs=${2:-5}
value_bytes=${3:-100}
bench=${FJORD_C_BUILD:-$here/../build}/bench
tmp=$(mktemp -d)
pid=
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
"$FJORD_BIN" serve --data-dir "$tmp/data" --listen 127.0.0.1:0 --operations-listen off >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listen\.tls=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$tmp/err" | head -1)
    [[ -n "$port" && -s "$tmp/data/certs/ca.pem" ]] && break
    sleep 0.1
done
[[ -n "$port" ]] || { echo "broker did not start"; cat "$tmp/err"; exit 1; }
for run in $(seq 1 "$runs"); do
    "$bench" 127.0.0.1 "$port" "$tmp/data/certs/ca.pem" "bench-$run" "$records" "$value_bytes" >"$tmp/run-$run"
    echo "run $run: $(tr '\n' ' ' <"$tmp/run-$run")"
done
median() { sort -n | awk '{a[NR]=$1} END {printf "%d\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median of $runs runs ($records records of $value_bytes bytes, TLS, broker $(basename "$FJORD_BIN")):" \
    "produce $(cat "$tmp"/run-* | awk '/^produce/ {print $2}' | median) records/s," \
    "consume $(cat "$tmp"/run-* | awk '/^consume/ {print $2}' | median) records/s"
