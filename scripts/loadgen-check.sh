#!/usr/bin/env bash
# Checks that ringecho-loadgen keeps itself out of the numbers, on this machine, in one run:
# server (epoll, one thread) pinned to the first half of the cores, loadgen to the other,
# ratios between runs made minutes apart at most. Prints each target, the figure and whether
# it was met; writes every run's JSON under results/loadgen-check-<time>/.
#
#   scripts/loadgen-check.sh [--quick]
#
# --quick shortens every window (for a smoke test; the figures are then noisier).
# Connections are spread over source addresses 127.0.0.2-127.0.0.9 so TIME_WAIT sockets left
# by earlier runs do not slow the connect phase's port search.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
win=3s; warm=1s
[ $quick = 1 ] && { win=1s; warm=300ms; }

cargo build --release -q -p ringecho-server -p ringecho-loadgen -p ringecho-perf
ulimit -n "$(ulimit -Hn)"
# The server gets the first half of the cores, the loadgen the rest (as compare.sh splits).
read -r srv_cpus lg_cpus half _ < <(target/release/ringecho-perf cores)

out="results/loadgen-check-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
taskset -c "$srv_cpus" target/release/ringecho-server --backend epoll --threads "$half" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --ready-file "$out/server.ready" \
  >"$out/server.log" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  [ -s "$out/server.ready" ] && break
  kill -0 "$srv" 2>/dev/null || { echo "loadgen-check: the server did not start:"; cat "$out/server.log"; exit 1; }
  sleep 0.05
done
[ -s "$out/server.ready" ] || { echo "loadgen-check: the server did not listen in 10 s"; exit 1; }
addr=$(sed -n 's/^listen //p' "$out/server.ready" | head -n1)
metrics="http://$(sed -n 's/^metrics //p' "$out/server.ready")/metrics"

lg() { # name, loadgen flags...
  local name=$1; shift
  taskset -c "$lg_cpus" target/release/ringecho-loadgen --addr "$addr" \
    --source-addrs 127.0.0.2-127.0.0.9 --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 || true
  [ -s "$out/$name.json" ] || { echo "loadgen-check: run $name failed:"; cat "$out/$name.txt"; exit 1; }
}

echo "loadgen-check: server CPUs $srv_cpus, loadgen CPUs $lg_cpus, results in $out"
lg base1 --connections 1 --rate 1000 --duration "$win" --warmup "$warm" --threads 1
lg c19k --connections 19000 --rate 2000 --duration "$win" --threads 1
lg c1k_1k --connections 1000 --rate 1000 --duration "$win" --warmup "$warm" --threads 1
lg c1k_50k --connections 1000 --rate 50000 --duration "$win" --warmup "$warm" --threads 1
lg c1k_50k_uniform --connections 1000 --rate 50000 --arrivals uniform --duration "$win" --warmup "$warm" --threads 1
lg pipe1 --connections 100 --pipeline 1 --duration "$win" --threads 1 --server-metrics "$metrics"
lg pipe16 --connections 100 --pipeline 16 --duration "$win" --threads 1 --server-metrics "$metrics"
lg beyond --connections 10 --rate 5000000 --duration "$win" --threads 1

target/release/ringecho-perf check "$out"
