#!/usr/bin/env bash
# The reference peers: echo servers nobody here wrote, fetched at pinned commits and built in
# a cache outside the checkout, for compare.sh to measure beside ringecho's backends exactly
# as --server does (compare.sh --peers runs this script).
#
#   scripts/peers.sh [--cache DIR] [--only NAME,NAME]
#
# Prints one line per peer it could build, NAME=COMMAND with {addr}/{port} left for
# compare.sh to fill; a peer that cannot be fetched or built gets one line on stderr, and the
# others go on. The names are fixed:
#   liburing  axboe/liburing's examples/echo-server.c (multishot accept and receive, a 256 x
#             4 KiB provided-buffer ring, DEFER_TASKRUN); it listens on port {port}
#   liburing-nodelay  the same example with one line added, TCP_NODELAY on its listening
#             socket (accepted sockets inherit it), as every ringecho backend sets it: without
#             it Nagle coalesces a stream's small sends, which a comparison would credit to
#             io_uring
#   c-epoll   frevib/epoll-echo-server (C, epoll, level-triggered, one 2 KiB buffer)
#   tokio     tokio's examples/echo-tcp.rs (multi-threaded runtime, one task per connection)
#   monoio    monoio's examples/echo.rs (io_uring "fusion" driver); its fixed 127.0.0.1:50002
#             is the one line changed, to the address given on its command line
# Sources are overridable, e.g. a local mirror or an offline copy (any URL or path git can
# clone): RINGECHO_PEER_SRC_LIBURING, RINGECHO_PEER_SRC_C_EPOLL, RINGECHO_PEER_SRC_TOKIO,
# RINGECHO_PEER_SRC_MONOIO, RINGECHO_PEER_SRC_LIBURING_NODELAY. The cache defaults to ${XDG_CACHE_HOME:-~/.cache}/ringecho-peers.
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ringecho-peers
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache=$2; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$cache"

# name | default source | pinned commit
peers=(
  "liburing|https://github.com/axboe/liburing|27255f4ceda937b3540e425ed58284f5c03c8ad4"
  "liburing-nodelay|https://github.com/axboe/liburing|27255f4ceda937b3540e425ed58284f5c03c8ad4"
  "c-epoll|https://github.com/frevib/epoll-echo-server|22f325165c3e9749aca85a777cbb8f9b66ea7a27"
  "tokio|https://github.com/tokio-rs/tokio|ea91b33ca57ff0581b38e735cc108f831bccbdaa"
  "monoio|https://github.com/bytedance/monoio|212fde187f3d41f65ecd35b9cac80f7e246bb58e"
)

# fetch NAME SRC COMMIT: the source at COMMIT in $cache/NAME (kept between runs).
fetch() {
  local name=$1 src=$2 commit=$3 dir=$cache/$1
  if [ -d "$dir/.git" ] && [ "$(git -C "$dir" rev-parse HEAD 2>/dev/null)" = "$commit" ]; then
    return 0
  fi
  rm -rf "$dir"
  git clone --quiet --no-checkout "$src" "$dir" 2>"$cache/$name.fetch.err" || {
    echo "peers.sh: $name: cannot fetch $src ($(tail -n1 "$cache/$name.fetch.err")); going on without it" >&2
    return 1
  }
  git -C "$dir" checkout --quiet "$commit" 2>"$cache/$name.fetch.err" || {
    echo "peers.sh: $name: $src has no commit $commit; going on without it" >&2
    return 1
  }
}

# build NAME: builds the peer in $cache/NAME; prints its command line.
build() {
  local name=$1 dir=$cache/$1 log=$cache/$1.build.log
  case "$name" in
    liburing)
      { (cd "$dir" && ./configure && make -C src -j2 && make -C examples echo-server); } >"$log" 2>&1 || return 1
      echo "$dir/examples/echo-server {port}" ;;
    liburing-nodelay)
      # The one change: TCP_NODELAY beside SO_REUSEADDR in the examples' listening socket.
      local h="$dir/examples/helpers.c"
      if ! grep -q TCP_NODELAY "$h"; then
        sed -i 's|^\(\s*\)ret = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(int));|&\n\1setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, \&enable, sizeof(int));|' "$h"
        sed -i '1i #include <netinet/in.h>\n#include <netinet/tcp.h>' "$h"
      fi
      grep -q 'IPPROTO_TCP, TCP_NODELAY' "$h" || { echo "the listening socket's set-up moved" >"$log"; return 1; }
      { (cd "$dir" && ./configure && make -C src -j2 && make -C examples echo-server); } >"$log" 2>&1 || return 1
      echo "$dir/examples/echo-server {port}" ;;
    c-epoll)
      (cd "$dir" && gcc -Wall -O2 -D_GNU_SOURCE epoll_echo_server.c -o epoll_echo_server) >"$log" 2>&1 || return 1
      echo "$dir/epoll_echo_server {port}" ;;
    tokio)
      (cd "$dir" && cargo build --quiet --release --example echo-tcp) >"$log" 2>&1 || return 1
      echo "$dir/target/release/examples/echo-tcp {addr}" ;;
    monoio)
      # The one change: the address from the command line instead of a fixed one.
      sed -i 's|TcpListener::bind("127.0.0.1:50002")|TcpListener::bind(std::env::args().nth(1).unwrap_or_else(\|\| "127.0.0.1:50002".into()))|' \
        "$dir/examples/echo.rs"
      grep -q 'env::args().nth(1)' "$dir/examples/echo.rs" || { echo "the address line moved" >"$log"; return 1; }
      (cd "$dir" && cargo build --quiet --release --example echo) >"$log" 2>&1 || return 1
      echo "$dir/target/release/examples/echo {addr}" ;;
  esac
}

for p in "${peers[@]}"; do
  IFS='|' read -r name src commit <<<"$p"
  [ -z "$only" ] || [[ "$only" == *",$name,"* ]] || continue
  var=RINGECHO_PEER_SRC_$(echo "$name" | tr 'a-z-' 'A-Z_')
  src=${!var:-$src}
  fetch "$name" "$src" "$commit" || continue
  if cmd=$(build "$name"); then
    echo "$name=$cmd"
  else
    echo "peers.sh: $name: the build failed (log: $cache/$name.build.log); going on without it" >&2
  fi
done
