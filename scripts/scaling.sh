#!/usr/bin/env bash
# A bounded scaling study for a bigger host: every backend at 1, 2, 4 and 8 server threads
# (one per physical core, on a split of the cores that never puts the server and the loadgen
# on one core, the server on one NUMA node while it has room), three scenarios — 1,000 × 64 B,
# 100 × 16 KiB, and 1,000 × 64 B with the server's CPU capped (needs root; skipped with one
# line otherwise) — 3 rounds of 2 s, the servers interleaved. Writes one results directory
# (table.txt's "Scaling" section, summary.json's server_threads and accepted_balance per row,
# report.html) to bring back; docs/scaling.md says how to read it.
#
#   scripts/scaling.sh [--threads 1,2,4,8] [--scenarios LIST] [--out DIR] [compare's flags]
#
# At most 10 minutes: 4 counts × 3 scenarios × 5 runs (4 backends and the baseline's A/A)
# × 3 rounds × ~3 s is 9 minutes, and a count the host cannot give cores of its own (past
# half its cores) is skipped with one line, so a smaller host takes less. The comparison is
# `ringecho-perf compare --threads` (perf/src/run/); `ringecho-perf split --threads N`
# prints the split each count gets.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=1,2,4,8
scenarios=c1000x64,c100x16k,cap1000x64
out="results/scaling-$(date -u +%Y%m%dT%H%M%SZ)"
rest=()
while (($#)); do
  case "$1" in
    --threads) threads="${2:?--threads needs a list}"; shift 2 ;;
    --scenarios) scenarios="${2:?--scenarios needs a list}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
echo "scaling.sh: building release binaries" >&2
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-perf
# The windows as compare's environment, so that --rounds, --duration and --warmup override.
export ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-2s}" WARMUP="${WARMUP:-500ms}"
exec target/release/ringecho-perf compare --threads "$threads" --scenarios "$scenarios" \
  --no-syscalls --out "$out" ${rest[@]+"${rest[@]}"}
