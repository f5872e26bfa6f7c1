#!/usr/bin/env bash
# The seed's tcpdump experiment with ringecho: one session closed with FIN, one with RST
# (SO_LINGER=0), each captured on loopback and annotated segment by segment; then the seed's
# three SetLinger modes (-1, 0, 2 s) where they differ, a close with data unacknowledged
# because the peer stopped reading, each captured and checked (exit 1 if one differs).
#
#   cargo build --release && sudo scripts/capture.sh [--backend uring|epoll|multishot] [--message TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."

backend=uring
message="Hi, gopher?"
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift 2 ;;
    --message) message=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "capture.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

if ! command -v tcpdump >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "capture.sh: installing tcpdump" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
  else
    echo "capture.sh: tcpdump is missing; install it (apt-get install tcpdump) and run as root" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "capture.sh: skipped: capturing on loopback needs root (or CAP_NET_RAW for tcpdump); run it as root: sudo scripts/capture.sh" >&2
  exit 0
fi

# Built beforehand, as the user (cargo is usually not on root's PATH under sudo, and a build
# as root would leave a root-owned target/).
bin=target/release
for b in ringecho-server ringecho-client; do
  if [ ! -x "$bin/$b" ]; then
    echo "capture.sh: $bin/$b is missing: build first, as yourself: cargo build --release" >&2
    exit 1
  fi
done
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the server picks a free port and prints it.
"$bin/ringecho-server" --listen 127.0.0.1:0 --backend "$backend" --threads 1 \
  --ready-file "$work/ready" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/ready" ] && break; sleep 0.1; done
addr=$(sed -n 's/^listen //p' "$work/ready" 2>/dev/null | head -n1)
[ -n "$addr" ] || { echo "capture.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
port=${addr##*:}

for mode in fin rst; do
  tcpdump -i lo -S -nn -l -U "tcp port $port" >"$work/$mode.txt" 2>"$work/$mode.err" &
  tcpdump_pid=$!
  for _ in $(seq 50); do grep -q "listening on" "$work/$mode.err" && break; sleep 0.1; done
  flags=()
  [ "$mode" = rst ] && flags=(--linger0)
  echo "=== close with $( [ "$mode" = rst ] && echo 'SO_LINGER=0 (RST)' || echo 'FIN' ): ringecho-client --addr $addr ${flags[*]:-}"
  "$bin/ringecho-client" --addr "$addr" --message "$message" "${flags[@]}"
  sleep 0.3
  kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
  "$bin/ringecho-client" explain-capture --port "$port" "$work/$mode.txt"
  echo
done

# SetLinger's three modes where they differ: ringecho-client stalled-close runs a peer of its
# own on a small receive buffer that does not read for 3 s, fills its send buffer, and
# closes. On a port of its own, so the capture holds that connection alone.
peer_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for secs in -1 0 2; do
  tcpdump -i lo -S -nn -l -U "tcp port $peer_port" >"$work/linger$secs.txt" 2>"$work/linger$secs.err" &
  tcpdump_pid=$!
  for _ in $(seq 50); do grep -q "listening on" "$work/linger$secs.err" && break; sleep 0.1; done
  echo "=== a close with data unacknowledged, SetLinger($secs): ringecho-client stalled-close --linger $secs"
  "$bin/ringecho-client" stalled-close --linger "$secs" --hold 3s --listen "127.0.0.1:$peer_port"
  sleep 0.3
  kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
  "$bin/ringecho-client" explain-capture --port "$peer_port" --stalled "$secs" "$work/linger$secs.txt"
  echo
done
