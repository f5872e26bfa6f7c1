#!/usr/bin/env bash
# Every backend side by side on loopback, in one run: the same load against uring, epoll and
# multishot, interleaved round by round (A B C A B C), server and loadgen pinned to different
# cores, a warm-up excluded from the figures. Prints a table with ratios to epoll, writes every
# run's JSON and a latency plot under results/, and fails loudly if a server dies, an echo is
# corrupted or FIN/RST counts disagree.
#
#   scripts/compare.sh [--quick] [--scenarios a,b] [--backends uring,epoll,multishot]
#                      [--rounds N] [--duration DUR] [--warmup DUR] [--out DIR] [--no-syscalls]
#
# Scenarios: c100x64 c1000x64 c1000x4k c10kx64 churn rate idle10k (default: all, ~3 min).
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=${SCENARIOS:-c100x64,c1000x64,c1000x4k,c10kx64,churn,rate,idle10k}
backends=${BACKENDS:-uring,epoll,multishot}
rounds=${ROUNDS:-2}
duration=${DURATION:-2s}
warmup=${WARMUP:-700ms}
syscalls=1
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) scenarios=c100x64,churn; duration=1s; warmup=300ms; syscalls=0; shift ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-syscalls) syscalls=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

scenario_flags() {
  case "$1" in
    c100x64)  echo "--connections 100 --payload 64" ;;
    c1000x64) echo "--connections 1000 --payload 64" ;;
    c1000x4k) echo "--connections 1000 --payload 4096" ;;
    c10kx64)  echo "--connections 10000 --payload 64" ;;
    churn)    echo "--connections 1000 --payload 64 --churn 100 --rst-share 0.25" ;;
    rate)     echo "--connections 1000 --payload 64 --rate 50000" ;;
    idle10k)  echo "--connections 10000 --payload 64 --rate 1000" ;;
    *) echo "compare.sh: unknown scenario '$1'" >&2; return 1 ;;
  esac
}
IFS=, read -r -a scenario_list <<<"$scenarios"
IFS=, read -r -a backend_list <<<"$backends"
for s in "${scenario_list[@]}"; do scenario_flags "$s" >/dev/null; done

echo "compare.sh: building release binaries" >&2
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen
bin=target/release

# Half the cores for the server, the other half for the loadgen.
ncpu=$(nproc)
half=$(( ncpu / 2 > 0 ? ncpu / 2 : 1 ))
server_cpus="0-$(( half - 1 ))"
loadgen_cpus="$half-$(( ncpu - 1 ))"
[ "$ncpu" -lt 2 ] && loadgen_cpus=0
server_threads=$half
loadgen_threads=$(( ncpu - half > 0 ? ncpu - half : 1 ))

[ -n "$out" ] || out="results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $ncpu ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "server: taskset -c $server_cpus, $server_threads threads; loadgen: taskset -c $loadgen_cpus, $loadgen_threads threads"
  echo "warmup $warmup, duration $duration, rounds $rounds"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null; true; }
trap cleanup EXIT

fail() { echo "compare.sh: FAILED: $*" >&2; exit 1; }

# run SCENARIO BACKEND ROUND WARMUP DURATION [extra loadgen flags…]
run() {
  local scenario=$1 backend=$2 round=$3 run_warmup=$4 run_duration=$5; shift 5
  local name="$scenario-$backend-$round" log="$out/$scenario-$backend-$round"
  taskset -c "$server_cpus" "$bin/ringecho-server" --backend "$backend" --threads "$server_threads" \
    --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$log.server.out" 2>"$log.server.err" &
  server_pid=$!
  local addr="" murl=""
  for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on //p' "$log.server.out" | head -n1)
    murl=$(sed -n 's/.*metrics at //p' "$log.server.out" | head -n1)
    [ -n "$addr" ] && [ -n "$murl" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "$name: the server did not start: $(cat "$log.server.err")"
    sleep 0.05
  done
  [ -n "$addr" ] || fail "$name: the server did not report its address"
  # shellcheck disable=SC2046
  if ! taskset -c "$loadgen_cpus" "$bin/ringecho-loadgen" --addr "$addr" --threads "$loadgen_threads" \
      $(scenario_flags "$scenario") --warmup "$run_warmup" --duration "$run_duration" \
      --server-metrics "$murl" --server-pid "$server_pid" "$@" \
      --tag "scenario=$scenario" --tag "backend=$backend" --tag "round=$round" \
      --json "$log.json" --hgrm "$log.hgrm" >"$log.txt" 2>"$log.err"; then
    cat "$log.txt" "$log.err" >&2
    fail "$name: the loadgen reported a failure (see above)"
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "$name: the server died during the run"
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [ "$rc" = 0 ] || fail "$name: the server exited with $rc: $(tail -n3 "$log.server.err")"
  printf '  %-28s %s\n' "$name" "$(grep -E 'throughput' "$log.txt" | sed 's/^ *throughput *//')" >&2
}

for scenario in "${scenario_list[@]}"; do
  echo "scenario $scenario: $(scenario_flags "$scenario")" >&2
  # The idle scenario measures memory, which needs no repeat and no long window.
  scenario_rounds=$rounds
  [ "$scenario" = idle10k ] && scenario_rounds=1
  for round in $(seq "$scenario_rounds"); do
    for backend in "${backend_list[@]}"; do
      run "$scenario" "$backend" "$round" "$warmup" "$duration"
    done
  done
  if [ "$syscalls" = 1 ] && [ "$scenario" != idle10k ] && command -v perf >/dev/null 2>&1; then
    for backend in "${backend_list[@]}"; do
      # Counting syscalls costs the server a little per call: a short pass of its own,
      # whose other figures are not used.
      run "$scenario" "$backend" sc 300ms 1s --count-syscalls --tag pass=syscalls
    done
  fi
done

echo >&2
reports=()
for s in "${scenario_list[@]}"; do reports+=("$out/$s"-*.json); done
"$bin/ringecho-loadgen" compare --baseline epoll --json "$out/summary.json" "${reports[@]}" \
  | tee "$out/table.txt" || fail "a run was not clean (see the table)"

plot_scenario=c1000x64
[[ ",$scenarios," == *",$plot_scenario,"* ]] || plot_scenario=${scenario_list[0]}
curves=()
for backend in "${backend_list[@]}"; do curves+=("$backend=$out/$plot_scenario-$backend-1.hgrm"); done
"$bin/ringecho-loadgen" plot --out "$out/latency-$plot_scenario.svg" \
  --title "echo latency, $plot_scenario ($(uname -r))" "${curves[@]}"
echo "compare.sh: results in $out (table.txt, summary.json, latency-$plot_scenario.svg, one JSON per run)"
