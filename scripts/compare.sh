#!/usr/bin/env bash
# Every backend side by side on loopback, in one run: the same load against epoll-loop,
# multishot, epoll and uring (and any echo server you bring with --server or --peers),
# interleaved round by round (A B C A B C), server and loadgen pinned to different cores, a
# warm-up excluded from the figures. Prints a table with ratios to the baseline (the epoll
# loop when it runs, else epoll, else the first server; --baseline NAME), writes every run's
# JSON, the latency and latency-load plots and report.html under results/. A server that
# never listens, dies or corrupts an echo gets a FAILED row and the run goes on; the script
# then exits 1.
#
#   scripts/compare.sh [--quick] [--scenarios a,b] [--backends epoll-loop,multishot,epoll,uring] [--baseline NAME]
#                      [--server NAME='COMMAND']... [--rounds N] [--duration DUR]
#                      [--warmup DUR] [--out DIR] [--no-syscalls] [--sweep-rates LIST]
#                      [--cap FRACTION] [--peers[=NAME,NAME]] [--peers-cache DIR] [--profile]
#                      [--paired] [--map]
#
# --map adds the map of the workload space after the scenarios (`ringecho-perf map`'s default
# slices: message size × messages in flight, connections × messages per connection; about 13
# minutes on 2 cores, 2 with --quick): map.json, map.txt, map.svg and its heat maps in
# report.html. `ringecho-perf map` runs a map of your own axes alone.
#
# The comparison itself is `ringecho-perf compare` (perf/src/run/); --help there says
# what each flag does. This script builds the release binaries and runs it from the
# checkout's root.
# Scenarios (data in perf/src/scenario.rs; `ringecho-perf scenario NAME` prints one's flags):
# c100x64 c1000x64 c1000x4k c10kx64 c1000p16 churn rate idle10k cpr cprrst stream1k
# stream4x2k c100x16k c10x64k cap1000x64 cap10kx64 cap1000p16 sweep (default: all, 5–10
# minutes depending on the machine; --quick: c100x64, churn and sweep with short windows,
# unless --scenarios names others).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "compare.sh: building release binaries" >&2
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-perf
exec target/release/ringecho-perf compare "$@"
