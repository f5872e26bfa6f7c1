#!/usr/bin/env bash
# Runs every test on loopback: unit tests, the servers and loadgen for real, the tcpdump
# capture checks and the fault suite. Installs what the tests need (tcpdump, iproute2, iptables) when
# run as root on a Debian-like machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
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

profile=default
[ -n "${CI:-}" ] && profile=ci
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --profile "$profile" "$@"
else
  cargo test --workspace "$@"
fi
