#!/usr/bin/env bash
# Kernel entries per operation of the epoll and the io_uring servers: system
# calls per echo round trip (echo64 c50) and per Redis PING (ping P1, P16,
# redis-benchmark -c 50) of asyncnet, asyncnet-uring (asyncnet with
# ASYNCNET_DRIVER=io_uring), the C epoll floor (c-floor) and the C io_uring
# floor (c-uring), counted with `strace -c -f` attached to each server.
#
# It is the suite's own system call pass (see bench/README.md, "System calls"),
# run for just those rows: one short measured round per peer first (its figures
# are printed but mean nothing here), then the traced runs. The io_uring servers'
# reads and writes are requests on their ring, not system calls: their kernel
# entries are the `io_uring_enter` column (and the total).
#
# Usage (from anywhere): bench/syscalls.sh [ROUND_TRIPS]
#   ROUND_TRIPS: traced echo round trips (default 10000); ping traces 2x (P1)
#   and 10x (P16) as many requests.
# Needs strace (may attach: root, or kernel.yama.ptrace_scope 0), cc, and
# redis-benchmark (package redis-tools) for the ping rows. c-uring is skipped,
# with the reason, where io_uring may not be used (e.g. under Docker's default
# seccomp profile).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
if ! command -v strace >/dev/null; then
    echo "bench/syscalls.sh: strace not found (package strace)" >&2
    exit 1
fi
cargo build --release -q -p asyncnet-bench
bench="${CARGO_TARGET_DIR:-target}/release/bench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "$bench" --only echo,ping --echo-conns 50 \
    --peers asyncnet,asyncnet-uring,c-floor,c-uring \
    --rounds 1 --secs 1 --warmup 0.5 --syscall-requests "$n" --no-write >"$out" 2>&1; then
    cat "$out"
    exit 1
fi
echo "system calls per operation, strace -c -f ($n echo round trips; ping: $((2 * n)) P1, $((10 * n)) P16 requests):"
sed -n '/^system calls per operation:/,/^$/{/^system calls per operation:/d;p}' "$out"
grep -E '^note: |^notes:|^  ' "$out" | grep -E 'skipped|system call pass|^note: ' || true
