#!/usr/bin/env bash
# The loadgen's own CPU per message, one build against another, side by side: two servers
# (this build's ringecho-server, epoll-loop, one thread each) share the first core, and the
# two loadgens run at the same time on the second, swapping servers every pair, so a drift
# of the machine falls on both. Prints, per scenario, NEW/OLD per pair and the median.
#
#   scripts/loadgen-ab.sh OLD_LOADGEN NEW_LOADGEN [PAIRS]     (PAIRS: 6; 4 s windows)
#
# Give the same binary twice for the noise floor. Needs two cores and taskset.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
old=$1 new=$2 pairs=${3:-6}
[[ "$pairs" =~ ^[1-9][0-9]?$ ]] || { echo "loadgen-ab.sh: PAIRS must be 1 to 99" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
server=$here/target/release/ringecho-server
for b in "$old" "$new" "$server"; do
  [ -x "$b" ] || { echo "loadgen-ab.sh: $b is not an executable (cargo build --release)" >&2; exit 2; }
done
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$out"' EXIT
for port in 18101 18102; do
  taskset -c 0 "$server" --backend epoll-loop --listen 127.0.0.1:$port --threads 1 >/dev/null 2>&1 &
  pids+=($!)
done
sleep 1
for sc in "100 closed" "1000 closed" "100 20000"; do
  set -- $sc
  rate=(); [ "$2" != closed ] && rate=(--rate "$2")
  for i in $(seq "$pairs"); do
    a=18101 b=18102; [ $((i % 2)) = 0 ] && a=18102 b=18101
    common=(--connections "$1" --threads 1 --duration 4s --warmup 1s "${rate[@]}")
    taskset -c 1 "$old" --addr 127.0.0.1:$a "${common[@]}" --json "$out/$1-$2-old-$i.json" >/dev/null 2>&1 &
    o=$!
    taskset -c 1 "$new" --addr 127.0.0.1:$b "${common[@]}" --json "$out/$1-$2-new-$i.json" >/dev/null 2>&1 &
    n=$!
    wait $o $n || echo "loadgen-ab.sh: a run of $1 $2 pair $i failed" >&2
  done
done
python3 - "$out" "$pairs" <<'PY'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
for sc in ["100-closed", "1000-closed", "100-20000"]:
    r = []
    for i in range(1, pairs + 1):
        try:
            o, n = (json.load(open(f"{out}/{sc}-{w}-{i}.json"))["loadgen_cpu"]["us_per_msg"] for w in ("old", "new"))
        except (OSError, KeyError, ValueError):
            continue
        if o > 0:
            r.append(n / o)
    if r:
        print(f"{sc:12} new/old {' '.join(f'{x:.3f}' for x in r)}  median {statistics.median(r):.3f}")
    else:
        print(f"{sc:12} no complete pair")
PY
