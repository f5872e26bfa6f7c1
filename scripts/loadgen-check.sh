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

cargo build --release -q -p ringecho-server -p ringecho-loadgen
ulimit -n "$(ulimit -Hn)"
cores=$(nproc)
half=$(( cores / 2 > 0 ? cores / 2 : 1 ))
srv_cpus="0-$(( half - 1 ))"
lg_cpus="$half-$(( cores - 1 ))"
[ "$cores" = 1 ] && lg_cpus=0

out="results/loadgen-check-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
port=$(( 20000 + RANDOM % 20000 ))
mport=$(( port + 1 ))
taskset -c "$srv_cpus" target/release/ringecho-server --backend epoll --threads "$half" \
  --listen "127.0.0.1:$port" --metrics "127.0.0.1:$mport" >"$out/server.log" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done

lg() { # name, loadgen flags...
  local name=$1; shift
  taskset -c "$lg_cpus" target/release/ringecho-loadgen --addr "127.0.0.1:$port" \
    --source-addrs 127.0.0.2-127.0.0.9 --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 || true
  [ -s "$out/$name.json" ] || { echo "loadgen-check: run $name failed:"; cat "$out/$name.txt"; exit 1; }
}
get() { python3 -c "import json,sys; d=json.load(open('$out/$1.json')); print(eval('d'+sys.argv[1]))" "$2"; }

echo "loadgen-check: server CPUs $srv_cpus, loadgen CPUs $lg_cpus, results in $out"
lg base1 --connections 1 --rate 1000 --duration "$win" --warmup "$warm" --threads 1
lg c19k --connections 19000 --rate 2000 --duration "$win" --threads 1
lg c1k_1k --connections 1000 --rate 1000 --duration "$win" --warmup "$warm" --threads 1
lg c1k_50k --connections 1000 --rate 50000 --duration "$win" --warmup "$warm" --threads 1
lg c1k_50k_uniform --connections 1000 --rate 50000 --arrivals uniform --duration "$win" --warmup "$warm" --threads 1
lg pipe1 --connections 100 --pipeline 1 --duration "$win" --threads 1 --server-metrics "http://127.0.0.1:$mport/metrics"
lg pipe16 --connections 100 --pipeline 16 --duration "$win" --threads 1 --server-metrics "http://127.0.0.1:$mport/metrics"
lg beyond --connections 10 --rate 5000000 --duration "$win" --threads 1

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = {n: json.load(open(f"{out}/{n}.json")) for n in
     ["base1", "c19k", "c1k_1k", "c1k_50k", "c1k_50k_uniform", "pipe1", "pipe16", "beyond"]}
rows = []
def row(target, figure, ok):
    rows.append((target, figure, "met" if ok else "MISSED"))
b = r["base1"]["latency_us"]; c = r["c19k"]["latency_us"]
row("19,000 conns @2000/s, no warm-up: p50 <= 2x 1 conn @1000/s",
    f"{c['p50']} vs {b['p50']} us = {c['p50']/max(b['p50'],1):.2f}x", c["p50"] <= 2 * b["p50"])
row("19,000 conns @2000/s, no warm-up: p99 <= 5x 1 conn @1000/s",
    f"{c['p99']} vs {b['p99']} us = {c['p99']/max(b['p99'],1):.2f}x", c["p99"] <= 5 * b["p99"])
lo = r["c1k_1k"]["latency_us"]["p50"]
for name, label in [("c1k_50k", "poisson"), ("c1k_50k_uniform", "uniform")]:
    hi = r[name]; p = hi["latency_us"]["p50"]
    row(f"1,000 conns @50,000/s ({label}): p50 <= 1.5x @1,000/s",
        f"{p} vs {lo} us = {p/max(lo,1):.2f}x", p <= 1.5 * lo)
    lag = hi["send_lag_us"]["p99"]; late = hi["loadgen_late_us"]["p99"]
    row(f"1,000 conns @50,000/s ({label}): send lag p99 <= 20 us",
        f"{lag} us (loadgen's own lateness p99 {late} us; achieved {hi['msgs_per_s']:.0f}/s)", lag <= 20)
p1, p16 = r["pipe1"], r["pipe16"]
ratio = p16["msgs_per_s"] / max(p1["msgs_per_s"], 1)
clean = all(x["mismatches"] == 0 and not x["errors"] and x.get("server_agrees") for x in (p1, p16))
row("--pipeline 16 vs 1, 100 conns closed loop: >= 3x msgs/s, verified, server agrees",
    f"{p16['msgs_per_s']:.0f} vs {p1['msgs_per_s']:.0f} = {ratio:.1f}x, clean={clean}", ratio >= 3 and clean)
bz = r["beyond"]
row("a rate beyond the loadgen's capacity is flagged loadgen-limited",
    "; ".join(bz["limited_reasons"]) or "not flagged", bz["loadgen_limited"])
w = max(len(t) for t, _, _ in rows)
for t, f, ok in rows:
    print(f"{t:<{w}}  {ok:<6}  {f}")
flags = {n: x["loadgen_limited"] for n, x in r.items()}
print("loadgen-limited runs:", ", ".join(n for n, v in flags.items() if v) or "none")
json.dump([{"target": t, "figure": f, "result": ok} for t, f, ok in rows],
          open(f"{out}/summary.json", "w"), indent=1)
PY
