#!/bin/bash
# User-space instructions per operation of one of our servers, counted exactly by callgrind
# (perf counters are not available on the project's machines; instruction counts are steady
# where timings drift).
#
# Usage: bench/callgrind-ir.sh echo|burst|pong|http [PORT] [CONNS]
#   echo: echo_asyncnet under `loadgen --conns CONNS --count COUNT` (round trips; CONNS 50)
#   burst: the same under `loadgen --workload burst` (8 messages per burst, think 100 ms, as
#         the suite's echo64 burst8 row; CONNS 1000 there), per message
#   pong: echo_asyncnet --pong under `redis-benchmark -c 50 -n 200000 -t ping_inline` (P1;
#         PIPELINE=16 adds `-P 16`, the suite's P16 row)
#   http: http_asyncnet under `wrk -t1 -c50 -d5s` (requests)
# Environment (all optional; COUNT for echo and burst only, SERVER for all but http):
#   COUNT=N        round trips measured (default 200000)
#   PIPELINE=N     pong only: requests each connection sends at once (default 1)
#   SERVER=NAME    asyncnet (default), tokio (echo_tokio), floor (bench/peers/echo_floor.c) or
#                  uring-floor (bench/peers/echo_uring.c; the C floors compiled with cc -O2
#                  into target/), to compare the same counts across peers (pong: each one's
#                  --pong mode)
#   ARGS="..."     more arguments for the server, before the port (e.g. --recv for
#                  echo_asyncnet, --own-buffers for the floor)
#   BIN=DIR        take the servers and loadgen from DIR (default target/release), e.g. a
#                  copy of an earlier build, to compare before and after
#   CACHE=1        simulate the caches too (--cache-sim=yes): prints D1 and LL misses per
#                  operation (first-level data cache and last-level cache, read + write)
#   LINES=1        record each instruction's count (--dump-instr=yes): prints the 64-byte
#                  lines of code run at least once every two operations (the hot path's
#                  footprint, which the kernel's own code evicts between system calls)
# Needs valgrind (and redis-tools / wrk for pong / http) and a release build:
#   cargo build --release -p asyncnet-bench
# Leaves the profile in target/callgrind.MODE[-SERVER[-cCONNS]][-PN][-uring][ARGS].out
# (callgrind_annotate; -PN for pong with PIPELINE=N, -uring with ASYNCNET_DRIVER=io_uring).
# echo counts exactly the COUNT round trips (connection setup and warm-up left out); pong and
# http count the whole run, startup included (a fraction of a percent).
set -euo pipefail
mode=${1:?usage: $0 echo|burst|pong|http [PORT] [CONNS]}
port=${2:-7199}
conns=${3:-50}
server=${SERVER:-asyncnet}
count=${COUNT:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/target/release}
tag=$mode
[ "$mode" = echo ] && [ "$server$conns" != asyncnet50 ] && tag=$mode-$server-c$conns
[ "$mode" = burst ] && tag=$mode-$server-c$conns
[ "$mode" = pong ] && [ "$server" != asyncnet ] && tag=$mode-$server
[ "$mode" = pong ] && [ "${PIPELINE:-1}" != 1 ] && tag=$tag-P$PIPELINE
[ "${ASYNCNET_DRIVER:-}" = io_uring ] && tag=$tag-uring
extra=()
[ -n "${ARGS:-}" ] && read -ra extra <<<"$ARGS" && tag=$tag$(printf '%s' "${extra[@]}")
load=(--workload echo)
if [ "$mode" = burst ]; then
  load=(--workload burst --burst 8 --think-ms 100)
  mode=echo
fi
out=$root/target/callgrind.$tag.out
log=$(mktemp)
pong=()
[ "$mode" = pong ] && pong=(--pong)
case $mode in
  echo | pong)
    case $server in
      asyncnet) srv=("$bin/echo_asyncnet" "${pong[@]}" "${extra[@]}" "$port") ;;
      tokio) srv=("$bin/echo_tokio" "${pong[@]}" "${extra[@]}" "$port") ;;
      floor)
        cc -O2 -g -o "$root/target/echo_floor" "$root/bench/peers/echo_floor.c"
        srv=("$root/target/echo_floor" "${pong[@]}" "${extra[@]}" "$port") ;;
      uring-floor)
        cc -O2 -g -o "$root/target/echo_uring" "$root/bench/peers/echo_uring.c"
        srv=("$root/target/echo_uring" "${pong[@]}" "${extra[@]}" "$port") ;;
      *) echo "unknown SERVER $server (asyncnet, tokio, floor or uring-floor)" >&2; exit 2 ;;
    esac ;;
  http) srv=("$bin/http_asyncnet" "${extra[@]}" "$port") ;;
  *) echo "unknown mode $mode (echo, pong or http)" >&2; exit 2 ;;
esac
opts=()
[ "${CACHE:-0}" = 1 ] && opts=(--cache-sim=yes)
[ "${LINES:-0}" = 1 ] && opts+=(--dump-instr=yes)
# Thousands of connections: the server (and valgrind, which keeps some descriptors for
# itself at the top of the range) need more than a default soft limit of 1024.
ulimit -n "$(ulimit -Hn)"
atstart=()
[ "$mode" = echo ] && atstart=(--instr-atstart=no)
valgrind --tool=callgrind "${atstart[@]}" "${opts[@]}" --callgrind-out-file="$out" "${srv[@]}" >"$log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.2; done
grep -q listening "$log" || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
case $mode in
  echo)
    # Only the COUNT round trips are counted: instrumentation is switched on when the load
    # generator says measure-start (every connection open, warmed up and quiet) and off at
    # measure-end (`--pause` waits for our go-ahead after each).
    coproc lg { "$bin/loadgen" "${load[@]}" --port "$port" --conns "$conns" --count "$count" --pause; }
    lg_pid=$lg_PID
    # Our own copies of the pipes: bash unsets `lg` as soon as the load generator exits,
    # which it may do before the loop below reads its last line.
    [ -n "${lg[0]:-}" ] || { echo "the load generator exited at once" >&2; exit 1; }
    exec {lg_out}<&"${lg[0]}" {lg_in}>&"${lg[1]}"
    while read -r line <&"$lg_out"; do
      case $line in
        measure-start) callgrind_control -i on $server_pid >/dev/null 2>&1; echo >&"$lg_in" ;;
        measure-end) callgrind_control -i off $server_pid >/dev/null 2>&1; echo >&"$lg_in" ;;
      esac
    done
    exec {lg_out}<&- {lg_in}>&-
    wait "$lg_pid"
    ops=$count ;;
  pong)
    redis-benchmark -p "$port" -c 50 -n 200000 -P "${PIPELINE:-1}" -t ping_inline -q >/dev/null 2>&1
    ops=200000 ;;
  http)
    ops=$(wrk -t1 -c50 -d5s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}') ;;
esac
# callgrind writes its profile as the server dies of the signal.
kill -TERM $server_pid
# Under valgrind the signal is taken only once the server's system call returns: on io_uring
# (ASYNCNET_DRIVER=io_uring) an idle server waits in io_uring_enter until something comes,
# so a connection comes.
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || true
# The C io_uring floor's wait is not ended by that connection: when it is still there after
# 10 s, have callgrind write what it counted (through vgdb, which interrupts the system call),
# then end it.
for _ in $(seq 50); do kill -0 $server_pid 2>/dev/null || break; sleep 0.2; done
if kill -0 $server_pid 2>/dev/null; then
  callgrind_control -d $server_pid >/dev/null 2>&1
  kill -KILL $server_pid 2>/dev/null || true
  [ -s "$out.1" ] || { echo "callgrind wrote no counts for the server" >&2; exit 1; }
  mv "$out.1" "$out"
fi
wait $server_pid 2>/dev/null || true
totals=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", ""); gsub(/\([^)]*\)/, ""); print}')
total=$(awk '{print $1}' <<<"$totals")
label=$mode
[ "$mode" = echo ] && label="${load[1]} $server c$conns"
[ "$mode" = pong ] && label="pong $server P${PIPELINE:-1}"
echo "$label: $total instructions / $ops operations = $((total / ops)) per operation$([ "$mode" = echo ] || echo ' (startup included)')"
if [ "${CACHE:-0}" = 1 ]; then
  # Events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
  read -r ir dr dw i1mr d1mr d1mw ilmr dlmr dlmw _ <<<"$totals"
  awk -v l="$label" -v ops="$ops" -v d1="$((d1mr + d1mw))" -v ll="$((dlmr + dlmw))" \
    -v i1="$i1mr" -v dacc="$((dr + dw))" \
    'BEGIN { printf "%s: per operation: %.1f data accesses, %.2f D1 misses, %.3f LL data misses, %.2f I1 misses\n", l, dacc/ops, d1/ops, ll/ops, i1/ops }'
fi
if [ "${LINES:-0}" = 1 ]; then
  # Cost lines are "position line-number Ir"; a position is absolute (0x...), relative
  # (+n, -n) or the same as the last (*); with --dump-instr each is one instruction. The
  # line after "calls=" is a call's inclusive cost: its position counts, its cost is the
  # callee's. Lines are keyed by object.
  awk -v ops="$ops" -v l="$label" '
    function hex(s,   i, n) { n = 0; s = tolower(substr(s, 3))
      for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return n }
    /^ob=/ { ob = $0; sub(/^ob=\(/, "", ob); sub(/\).*/, "", ob); next }
    /^calls=/ { call = 1; next }
    /^(0x|[+*-]|[0-9])/ {
      p = $1
      if (p ~ /^0x/) pos = hex(p); else if (p ~ /^[+-]/) pos += p; else if (p != "*") pos = p
      if (call) { call = 0; next }
      # The count of an instruction is how often it ran; a line ran as often as its busiest.
      k = ob SUBSEP int(pos / 64)
      if (NF >= 3 && $3 > runs[k]) runs[k] = $3
    }
    END { for (k in runs) if (runs[k] * 2 >= ops) hot++
      printf "%s: code run at least every other operation: %d lines of 64 bytes (%.1f KiB)\n", l, hot, hot * 64 / 1024 }
  ' "$out"
fi
