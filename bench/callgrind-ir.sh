#!/bin/bash
# User-space instructions per operation of one of our servers, counted exactly by callgrind
# (perf counters are not available on the project's machines; instruction counts are steady
# where timings drift).
#
# Usage: bench/callgrind-ir.sh echo|pong|http [PORT]
#   echo: echo_asyncnet under `loadgen --conns 50 --count 200000` (round trips)
#   pong: echo_asyncnet --pong under `redis-benchmark -c 50 -n 200000 -t ping_inline` (P1)
#   http: http_asyncnet under `wrk -t1 -c50 -d5s` (requests)
# Needs valgrind (and redis-tools / wrk for pong / http) and a release build:
#   cargo build --release -p asyncnet-bench
# Leaves the profile in target/callgrind.MODE.out (read it with callgrind_annotate).
set -euo pipefail
mode=${1:?usage: $0 echo|pong|http [PORT]}
port=${2:-7199}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release
out=$root/target/callgrind.$mode.out
log=$(mktemp)
case $mode in
  echo) srv=("$bin/echo_asyncnet" "$port") ;;
  pong) srv=("$bin/echo_asyncnet" --pong "$port") ;;
  http) srv=("$bin/http_asyncnet" "$port") ;;
  *) echo "unknown mode $mode (echo, pong or http)" >&2; exit 2 ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$out" "${srv[@]}" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.2; done
grep -q listening "$log" || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
case $mode in
  echo) "$bin/loadgen" --port "$port" --conns 50 --count 200000 >/dev/null; ops=200000 ;;
  pong) redis-benchmark -p "$port" -c 50 -n 200000 -t ping_inline -q >/dev/null 2>&1; ops=200000 ;;
  http)
    ops=$(wrk -t1 -c50 -d5s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}') ;;
esac
# callgrind writes its profile as the server dies of the signal.
kill -TERM $server
wait $server 2>/dev/null || true
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$mode: $total instructions / $ops operations = $((total / ops)) per operation (startup included)"
