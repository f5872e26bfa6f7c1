#!/usr/bin/env bash
# Runs ringecho-loadgen on several load hosts at once over SSH (or any command that runs a
# command on a host), starting together at one wall-clock time, and merges what they
# measured: histograms summed, counts summed and checked against the server's counters.
#
#   scripts/fleet.sh --host lg1 --host 'lg2=--rst-share 0.5' ... --server-metrics URL \
#       [--ssh 'ssh -o BatchMode=yes'] [--start-in 10s] [--loadgen ringecho-loadgen] \
#       [--scrape-prefix CMD] [--out DIR] -- LOADGEN FLAGS (--addr, --connections, ...)
#
# --host NAME[=FLAGS]   a load host, with flags of its own (repeatable)
# --ssh CMD             how to run a command on a host: CMD HOST COMMAND... (default: ssh)
# --start-in DUR        the common start is now + DUR (each host connects first): 10s;
#                       DUR as every ringecho program reads it: seconds, or a number
#                       with a unit (3, 500ms, 10s, 1m)
# --scrape-prefix CMD   prefix for fetching the server's metrics from here (e.g. to reach it
#                       through a jump host): none
# Clocks are taken as synchronised (NTP/PTP); each log states how late its host started.
# Each host writes its interval log to stdout (--hist-log -), so nothing is copied back.
set -euo pipefail
hosts=() ssh=ssh start_in=10s loadgen=ringecho-loadgen metrics="" prefix="" out=""
here=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --host) hosts+=("$2"); shift 2 ;;
    --ssh) ssh=$2; shift 2 ;;
    --start-in) start_in=$2; shift 2 ;;
    --loadgen) loadgen=$2; shift 2 ;;
    --server-metrics) metrics=$2; shift 2 ;;
    --scrape-prefix) prefix=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "fleet.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#hosts[@]} -gt 0 ] || { echo "fleet.sh: no --host given" >&2; exit 2; }
[ -n "$out" ] || out="results/fleet-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
local_loadgen=$(command -v "$loadgen" || echo "$here/target/release/ringecho-loadgen")

scrape() { # FILE
  [ -n "$metrics" ] || return 0
  # shellcheck disable=SC2086
  $prefix python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$metrics" >"$1"
}

# The loadgen reads the duration, by the rule every ringecho program follows.
if ! start_at=$("$local_loadgen" start-in "$start_in" 2>/dev/null); then
  [ -x "$local_loadgen" ] || command -v "$local_loadgen" >/dev/null ||
    { echo "fleet.sh: no $loadgen here to merge with (cargo build --release)" >&2; exit 2; }
  echo "fleet.sh: --start-in '$start_in' is not a duration (e.g. 500ms, 10s, 1m)" >&2
  exit 2
fi
scrape "$out/server-before.prom"
pids=()
for h in "${hosts[@]}"; do
  name=${h%%=*}
  extra=""
  [[ "$h" == *=* ]] && extra=${h#*=}
  # shellcheck disable=SC2086
  shared=()
  [ -n "$metrics" ] && shared=(--server-metrics "$metrics" --server-shared)
  $ssh "$name" "$loadgen" "$@" "${shared[@]}" $extra --start-at "$start_at" --tag "host=$name" --hist-log - \
    >"$out/$name.hlog" 2>"$out/$name.txt" &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    name=${hosts[$i]%%=*}
    echo "fleet.sh: the loadgen on $name failed: $(tail -n2 "$out/$name.txt" | tr '\n' ' ')" >&2
    # A log cut short is not a log: leave it out, and merge says the run is incomplete.
    [ -s "$out/$name.hlog" ] && grep -q "ringecho-counts" "$out/$name.hlog" || rm -f "$out/$name.hlog"
    failed=1
  fi
done
scrape "$out/server-after.prom"
logs=()
for f in "$out"/*.hlog; do [ -s "$f" ] && logs+=("$f"); done
check=()
[ -n "$metrics" ] && check=(--server-before "$out/server-before.prom" --server-after "$out/server-after.prom")
rc=0
if [ ${#logs[@]} -gt 0 ]; then
  "$local_loadgen" merge --expect ${#hosts[@]} "${check[@]}" --json "$out/merged.json" "${logs[@]}" \
    | tee "$out/merged.txt" || rc=$?
else
  echo "fleet.sh: no host produced a log" >&2
  rc=1
fi
[ "$failed" = 0 ] || rc=1
echo "fleet.sh: results in $out (one .hlog and .txt per host, merged.txt, merged.json)" >&2
exit $rc
