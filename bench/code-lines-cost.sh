#!/bin/bash
# What a round trip's lines of code cost when the kernel runs between them: the C epoll
# floor (bench/peers/echo_floor.c) with N extra calls per message, made two ways, at one
# connection (each round trip its own loop turn, so nothing is in cache twice):
#   lines: N calls to N different functions, each on a 64-byte line of its own
#   same:  N calls to one of them (the same instructions, on one line)
# and echo_asyncnet for comparison. Servers on CPU 0, `loadgen --conns 1` on CPU 1, ROUNDS
# interleaved rounds of SECS seconds; server user and system CPU per round trip, from
# /proc/PID/stat (clock ticks) over the measured window. The difference between `lines` and
# `same` is what the footprint costs beyond the instructions.
#
# Usage: bench/code-lines-cost.sh [N] [ROUNDS] [SECS]   (defaults 150 3 5)
# Needs cc, taskset and a release build (cargo build --release -p asyncnet-bench).
set -euo pipefail
n=${1:-150}
rounds=${2:-3}
secs=${3:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "static volatile unsigned pad_sink;"
  for ((k = 0; k < n; k++)); do
    echo "__attribute__((noinline, aligned(64))) static void pad$k(void) { pad_sink += $((k + 1))u; pad_sink ^= $((3 * k + 5))u; }"
  done
  echo "static int pad_mode;"
  printf 'static void pad_all(void) {\n  if (pad_mode == 1) {'
  for ((k = 0; k < n; k++)); do printf ' pad%d();' "$k"; done
  printf ' }\n  else if (pad_mode == 2) {'
  for ((k = 0; k < n; k++)); do printf ' pad0();'; done
  printf ' }\n}\n'
} >"$work/pad.h"
src=$root/bench/peers/echo_floor.c
grep -q '^#include <unistd.h>$' "$src" && grep -q '^        const char \*src = in;$' "$src" ||
  { echo "echo_floor.c changed shape: update the two insertion points below" >&2; exit 1; }
sed -e 's|^#include <unistd.h>$|&\n#include "pad.h"|' \
  -e 's|^        const char \*src = in;$|        pad_all();\n&|' \
  -e 's|^int main(int argc, char \*\*argv) {$|&\n    pad_mode = getenv("PAD") ? atoi(getenv("PAD")) : 0;|' \
  "$src" >"$work/floor_pad.c"
cc -O2 -I"$work" -I"$root/bench/peers" -o "$work/floor_pad" "$work/floor_pad.c"
tck=$(getconf CLK_TCK)

# One round: prints "user_us sys_us" per round trip.
round() {
  local port=$((20000 + RANDOM % 20000)) pid line t0='' t1='' ops=''
  env "$@" "$port" >"$work/srv.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q listening "$work/srv.log" && break; sleep 0.1; done
  while read -r line; do
    case $line in
      measure-start) t0=$(awk '{print $14, $15}' "/proc/$pid/stat") ;;
      measure-end) t1=$(awk '{print $14, $15}' "/proc/$pid/stat") ;;
      result*) ops=$(sed 's/.* ops=\([0-9]*\).*/\1/' <<<"$line") ;;
    esac
  done < <(taskset -c 1 "$bin/loadgen" --port "$port" --conns 1 --secs "$secs" --warmup 1)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -z "${t0:-}" ] || [ -z "${t1:-}" ] || [ -z "${ops:-}" ] || [ "$ops" = 0 ]; then
    echo "a round of '$*' measured nothing; the server said:" >&2
    cat "$work/srv.log" >&2
    exit 1
  fi
  awk -v a="$t0" -v b="$t1" -v ops="$ops" -v tck="$tck" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%.3f %.3f\n", (y[1] - x[1]) / tck / ops * 1e6, (y[2] - x[2]) / tck / ops * 1e6 }'
}

names=(floor "floor + $n lines" "floor + $n calls, 1 line" asyncnet)
cmds=("PAD=0 taskset -c 0 $work/floor_pad" "PAD=1 taskset -c 0 $work/floor_pad"
  "PAD=2 taskset -c 0 $work/floor_pad" "taskset -c 0 $bin/echo_asyncnet")
for ((r = 1; r <= rounds; r++)); do
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086 # the command's words
    got=$(round ${cmds[$i]}) || exit 1
    echo "$i $got" >>"$work/results"
    echo "round $r/$rounds ${names[$i]}: user, system µs per round trip $(tail -1 "$work/results" | cut -d' ' -f2-)" >&2
  done
done
echo "median over $rounds rounds, µs of server CPU per round trip (echo64, 1 connection):"
for i in "${!names[@]}"; do
  awk -v i="$i" '$1 == i { u[++k] = $2; t[k] = $2 + $3 }
    function med(a, k,   j, l, s) { for (j = 1; j <= k; j++) for (l = j + 1; l <= k; l++)
        if (a[l] < a[j]) { s = a[j]; a[j] = a[l]; a[l] = s }
      return a[int((k + 1) / 2)] }
    END { printf "%.3f %.3f\n", med(u, k), med(t, k) }' "$work/results" |
    { read -r u t; printf '  %-26s user %s  total %s\n' "${names[$i]}" "$u" "$t"; }
done
