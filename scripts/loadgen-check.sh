#!/usr/bin/env bash
# Checks that ringecho-loadgen keeps itself out of the numbers, on this machine, in one run:
# server (epoll) pinned to the first half of the cores, loadgen (one thread) to the other,
# ratios between runs made minutes apart at most. Prints each target, the figure and whether
# it was met; writes every run's JSON under results/loadgen-check-<time>/.
#
#   scripts/loadgen-check.sh [--quick]
#
# --quick shortens every window (for a smoke test; the figures are then noisier).
# Connections are spread over source addresses 127.0.0.2-127.0.0.9 so TIME_WAIT sockets left
# by earlier runs do not slow the connect phase's port search. The runs and the targets are
# `ringecho-perf loadgen-check` (perf/src/run/check.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ringecho-server -p ringecho-loadgen -p ringecho-perf
exec target/release/ringecho-perf loadgen-check "$@"
