#!/usr/bin/env bash
# Runs every test on loopback: unit tests, the servers and loadgen for real, the tcpdump
# capture checks, the fault suite, the commands the docs show, and compare.sh with its report
# rendered in a browser.
#
# As root on a Debian-like machine it installs what the tests use (tcpdump, iproute2,
# iptables, chromium, systemd-analyze, perf) and runs everything: no test may skip. As an ordinary
# user, or where a tool is missing, the tests that need root or that tool say "skipped" with
# the reason, and the closing line counts them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
if [ "$(id -u)" = 0 ]; then
  if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "test.sh: installing kubernetes-validate (PyPI) for the Kubernetes manifest's test" >&2
    python3 -m pip install --quiet kubernetes-validate 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages kubernetes-validate
    hash -r
  fi
  # Root with every tool: a test that would skip is a failure here.
  export RINGECHO_NO_SKIP=1
else
  command -v kubernetes-validate >/dev/null 2>&1 || need+=(kubernetes-validate)
fi
if [ "$(id -u)" != 0 ] && [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: not installed: ${need[*]}; the tests that need them will be skipped" >&2
fi

# compare.sh's test runs the release binaries: build them before the tests share the cores.
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-client -p ringecho-perf

RINGECHO_SKIPS=$(mktemp)
export RINGECHO_SKIPS
log=$(mktemp)
trap 'rm -f "$RINGECHO_SKIPS" "$log"' EXIT

profile=default
[ -n "${CI:-}" ] && profile=ci
rc=0
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --profile "$profile" "$@" 2>&1 | tee "$log" || rc=$?
  counts=$(sed -n 's/.*Summary \[.*\] *\([0-9]*\) tests\{0,1\} run: \([0-9]*\) passed.*/\1 \2/p' "$log" | tail -n1)
else
  echo "test.sh: cargo-nextest is not installed (cargo install cargo-nextest); using cargo test" >&2
  cargo test --workspace "$@" 2>&1 | tee "$log" || rc=$?
  counts=$(awk '/^test result:/ { run += $4 + $6; ok += $4 } END { print run, ok }' "$log")
fi

skipped=$(grep -c . "$RINGECHO_SKIPS" || true)
if [ "$skipped" -gt 0 ]; then
  echo
  echo "test.sh: $skipped tests skipped their checks here (they passed without running them):"
  sed 's/^/  skipped: /' "$RINGECHO_SKIPS"
fi
if [ -n "$counts" ]; then
  read -r run ok <<<"$counts"
  # The plain closing line: tests that really ran and passed, failed, and skipped with a reason.
  echo "test.sh: $((ok - skipped)) passed, $((run - ok)) failed, $skipped skipped"
fi
exit $rc
