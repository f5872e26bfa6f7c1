#!/usr/bin/env bash
# Runs every test on loopback: unit tests, the servers and loadgen for real, the tcpdump
# capture checks, the fault suite and compare.sh with its report rendered in a browser.
# Installs what the tests need (tcpdump, iproute2, iptables, python3, chromium, systemd) when run as
# root on a Debian-like machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test.sh: missing ${need[*]}; install them (the capture and fault tests need them)" >&2
    exit 1
  fi
fi

# compare.sh's test runs the release binaries: build them before the tests share the cores.
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen

profile=default
[ -n "${CI:-}" ] && profile=ci
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --profile "$profile" "$@"
else
  cargo test --workspace "$@"
fi
