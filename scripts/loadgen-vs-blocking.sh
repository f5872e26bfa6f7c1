#!/usr/bin/env bash
# The loadgen's own CPU per message against the classic thread-per-connection blocking echo
# client, each on one core against the same epoll server on the other core.
#
#   scripts/loadgen-vs-blocking.sh [--duration DUR] [--connections "100 10000"]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5s
conns="100 10000"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "loadgen-vs-blocking.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-benches --bins
bin=target/release
server_pid=""
trap '[ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null; true' EXIT
ready=$(mktemp -u)
taskset -c 0 "$bin/ringecho-server" --backend epoll --threads 1 --listen 127.0.0.1:0 \
  --ready-file "$ready" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$ready" ] && break; sleep 0.05; done
addr=$(sed -n 's/^listen //p' "$ready" | head -n1)
rm -f "$ready"
for n in $conns; do
  echo "== $n connections × 64 B, client on CPU 1, server (epoll) on CPU 0, $duration"
  timeout 120 taskset -c 1 "$bin/blocking-client" --addr "$addr" --connections "$n" --duration "$duration" \
    || echo "blocking-client: could not run $n connections"
  timeout 120 taskset -c 1 "$bin/ringecho-loadgen" --addr "$addr" --connections "$n" --threads 1 \
    --warmup 500ms --duration "$duration" | grep -E "throughput|loadgen cpu" \
    || echo "ringecho-loadgen: could not run $n connections"
done
