#!/usr/bin/env bash
# Runs the fault suite (integration/tests/faults.rs) against every backend and prints its figures
# as the README's reliability table. Needs root for the network-namespace scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
trap 'rm -f "$report"' EXIT
RINGECHO_FAULTS_REPORT="$report" cargo nextest run -p ringecho-integration --test faults \
  --test-threads 1 --no-fail-fast
cargo run --quiet -p ringecho-integration --bin faults-table -- "$report"
