#!/usr/bin/env bash
# Every backend side by side on loopback, in one run: the same load against uring, epoll and
# multishot (and any echo server you bring with --server), interleaved round by round
# (A B C A B C), server and loadgen pinned to different cores, a warm-up excluded from the
# figures. Prints a table with ratios to epoll, writes every run's JSON, the latency and
# latency-load plots and report.html under results/. A server that never listens, dies or
# corrupts an echo gets a FAILED row and the run goes on; the script then exits 1.
#
#   scripts/compare.sh [--quick] [--scenarios a,b] [--backends uring,epoll,multishot]
#                      [--server NAME='COMMAND']... [--rounds N] [--duration DUR]
#                      [--warmup DUR] [--out DIR] [--no-syscalls] [--sweep-rates LIST]
#                      [--cap FRACTION] [--peers[=NAME,NAME]] [--peers-cache DIR] [--profile]
#
# --server: any echo server, started as COMMAND with {addr} (127.0.0.1:PORT) and {port}
#   substituted, pinned like the built-in ones; measured from outside (/proc, the kernel).
# --backends '' compares external servers alone.
# --peers: the reference peers beside them, as --server rows (liburing, c-epoll, tokio,
#   monoio; --peers=liburing,c-epoll for some): scripts/peers.sh fetches them at pinned
#   commits and builds them in --peers-cache (default ~/.cache/ringecho-peers); one that
#   cannot be fetched or built is named on stderr and the run goes on without it.
# --sweep-rates 80000,100000,120000: the sweep's offered rates (default: 10,000 to 640,000
#   doubling), to place a knee more finely.
# --profile: after the rounds, one more short run of the plot scenario per server under
#   `perf record -e cpu-clock -g`, its CPU per message split by category (TCP/IP and skb,
#   scheduling and wake-ups, the I/O interface, user space): profile.txt, profile.json and a
#   stacked bar in report.html. Skipped, with the reason, where perf is not installed.
# Scenarios (data in perf/src/scenario.rs; `ringecho-perf scenario NAME` prints one's flags):
# c100x64 c1000x64 c1000x4k c10kx64 c1000p16 churn rate idle10k cap1000x64 cap10kx64
# cap1000p16 sweep (default: all, 5–10 minutes depending on the machine; --quick: c100x64,
# churn and sweep with short windows, unless --scenarios names others).
# cap*: the server's CPU capped (--cap, default 0.3 of a core per server thread, a cgroup CPU
#   quota; needs root) so that the server, not the loadgen, is the bottleneck: msgs/s ×epoll
#   is then what each server does with the same CPU. Skipped, with the reason, where no
#   cgroup CPU controller can be written.
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=${SCENARIOS:-}
cap=0.3
backends=${BACKENDS:-uring,epoll,multishot}
rounds=${ROUNDS:-2}
duration=${DURATION:-2s}
warmup=${WARMUP:-700ms}
syscalls=1
out=""
sweep_rates=""
externals=()
peers=""
peers_cache=""
profile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=1s; warmup=300ms; syscalls=0; quick=1; shift ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --server)
      [[ "$2" == *=* ]] || { echo "compare.sh: --server takes NAME='COMMAND'" >&2; exit 2; }
      externals+=("$2"); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-syscalls) syscalls=0; shift ;;
    --sweep-rates) sweep_rates=$2; shift 2 ;;
    --cap) cap=$2; shift 2 ;;
    --peers) peers=all; shift ;;
    --peers=*) peers=${1#--peers=}; shift ;;
    --peers-cache) peers_cache=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

echo "compare.sh: building release binaries" >&2
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-perf
bin=target/release

# A scenario's loadgen flags: the scenarios are data in ringecho-perf (perf/src/scenario.rs).
scenario_flags() {
  "$bin/ringecho-perf" scenario "$1"
}
quick=${quick:-0}
[ -n "$scenarios" ] || scenarios=$("$bin/ringecho-perf" scenarios $([ "$quick" = 1 ] && echo --quick))
if [ -n "$peers" ]; then
  peer_args=()
  [ -n "$peers_cache" ] && peer_args+=(--cache "$peers_cache")
  [ "$peers" != all ] && peer_args+=(--only "$peers")
  echo "compare.sh: fetching and building the reference peers (scripts/peers.sh)" >&2
  while IFS= read -r line; do
    [ -n "$line" ] && externals+=("$line")
  done < <(bash scripts/peers.sh "${peer_args[@]}")
fi
IFS=, read -r -a scenario_list <<<"$scenarios"
backend_list=()
[ -n "$backends" ] && IFS=, read -r -a backend_list <<<"$backends"
for s in "${scenario_list[@]}"; do scenario_flags "$s" >/dev/null || exit 2; done
# Servers in run order: built-in backends, then external ones by name.
declare -A external_cmd=()
servers=("${backend_list[@]}")
for e in "${externals[@]}"; do
  name=${e%%=*}
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "compare.sh: server name '$name' must be letters, digits, . _ -" >&2; exit 2; }
  external_cmd[$name]=${e#*=}
  servers+=("$name")
done
[ ${#servers[@]} -gt 0 ] || { echo "compare.sh: nothing to compare (no --backends, no --server)" >&2; exit 2; }

# Half the cores for the server, the other half for the loadgen (the split is ringecho-perf's,
# shared with loadgen-check.sh).
ncpu=$(nproc)
read -r server_cpus loadgen_cpus server_threads loadgen_threads < <("$bin/ringecho-perf" cores)

# Connections come from 127.0.0.2-127.0.0.9: TIME_WAIT sockets left by earlier runs would
# otherwise slow every connect's search for a free port (tens of thousands pile up).
source_addrs=127.0.0.2-127.0.0.9
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

# The CPU cap for cap* scenarios: a cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us) holding the
# server, with a 5 ms period so that throttling comes in small slices. cap_dir stays empty
# (cap_error says why) where none can be made.
cap_dir="" cap_error=""
if [[ ",$scenarios," == *,cap* ]]; then
  period=5000
  quota=$(awk -v c="$cap" -v p="$period" -v t="$server_threads" 'BEGIN { q = int(c * p * t); print (q < 1000 ? 1000 : q) }')
  if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null \
      && mkdir -p /sys/fs/cgroup/ringecho-cap-$$ 2>/dev/null \
      && echo "$quota $period" >/sys/fs/cgroup/ringecho-cap-$$/cpu.max 2>/dev/null; then
    cap_dir=/sys/fs/cgroup/ringecho-cap-$$
  elif [ -d /sys/fs/cgroup/cpu ] && mkdir -p /sys/fs/cgroup/cpu/ringecho-cap-$$ 2>/dev/null \
      && echo "$period" >/sys/fs/cgroup/cpu/ringecho-cap-$$/cpu.cfs_period_us 2>/dev/null \
      && echo "$quota" >/sys/fs/cgroup/cpu/ringecho-cap-$$/cpu.cfs_quota_us 2>/dev/null; then
    cap_dir=/sys/fs/cgroup/cpu/ringecho-cap-$$
  else
    cap_error="no writable cgroup CPU controller (run as root on cgroup v1 or v2 with cpu)"
  fi
  [ -n "$cap_dir" ] && echo "cap: the server at $cap of a core per thread ($quota µs per $period µs, $cap_dir)" | tee -a "$out/machine.txt" >&2
fi

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null
  [ -n "$cap_dir" ] && { sleep 0.2; rmdir "$cap_dir" 2>/dev/null; }
  true
}
trap cleanup EXIT

failed=0
# failed_row LOG SCENARIO SERVER ROUND WHY: a JSON row saying why there are no figures.
failed_row() {
  failed=1
  "$bin/ringecho-perf" failed "$1.json" "$2" "$3" "$4" "$5"
  echo "compare.sh: $3 in $2 round $4 FAILED: $5" >&2
}

# A free TCP port on loopback for an external server.
free_port() {
  "$bin/ringecho-perf" free-port
}

# start_server SERVER LOG: starts it pinned to the server cores; sets server_pid, addr and murl
# (the metrics URL, built-in servers only). Returns 1, the reason in start_error, if it never
# listens.
start_server() {
  local srv=$1 log=$2
  addr="" murl="" start_error=""
  if [ -n "${external_cmd[$srv]+x}" ]; then
    local port cmd
    port=$(free_port)
    cmd=${external_cmd[$srv]//\{addr\}/127.0.0.1:$port}
    cmd=${cmd//\{port\}/$port}
    taskset -c "$server_cpus" bash -c "exec $cmd" >"$log.server.out" 2>"$log.server.err" &
    server_pid=$!
    for _ in $(seq 200); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then addr=127.0.0.1:$port; return 0; fi
      if ! kill -0 "$server_pid" 2>/dev/null; then
        local rc=0
        wait "$server_pid" 2>/dev/null || rc=$?
        server_pid=""
        start_error="exited (status $rc) before listening: $(tail -n2 "$log.server.err" | tr '\n' ' ')"
        return 1
      fi
      sleep 0.05
    done
    start_error="never listened on 127.0.0.1:$port (10 s)"
    return 1
  fi
  rm -f "$log.ready"
  taskset -c "$server_cpus" "$bin/ringecho-server" --backend "$srv" --threads "$server_threads" \
    --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --ready-file "$log.ready" \
    >"$log.server.out" 2>"$log.server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    if [ -s "$log.ready" ]; then
      addr=$(sed -n 's/^listen //p' "$log.ready" | head -n1)
      murl="http://$(sed -n 's/^metrics //p' "$log.ready")/metrics"
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { start_error="did not start: $(tail -n2 "$log.server.err" | tr '\n' ' ')"; return 1; }
    sleep 0.05
  done
  start_error="did not write its ready file in 5 s"
  return 1
}

# stop_server [SIGNAL]: signals the server (SIGTERM by default) and returns its exit status.
stop_server() {
  local rc=0
  [ -n "$server_pid" ] || return 0
  kill "-${1:-TERM}" "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || rc=$?
  server_pid=""
  return $rc
}

# run SCENARIO SERVER ROUND WARMUP DURATION [extra loadgen flags…]
run() {
  local scenario=$1 srv=$2 round=$3 run_warmup=$4 run_duration=$5; shift 5
  local log="$out/$scenario-$srv-$round"
  if ! start_server "$srv" "$log"; then
    stop_server KILL || true
    failed_row "$log" "$scenario" "$srv" "$round" "the server $start_error"
    return 0
  fi
  # Capped: the whole server process (every thread, and any it starts) into the cgroup.
  if [[ "$scenario" == cap* ]] && ! echo "$server_pid" >"$cap_dir/cgroup.procs"; then
    stop_server KILL || true
    failed_row "$log" "$scenario" "$srv" "$round" "could not cap the server's CPU in $cap_dir"
    return 0
  fi
  local witness=()
  [ -n "$murl" ] && witness=(--server-metrics "$murl")
  local lg_rc=0
  # shellcheck disable=SC2046
  taskset -c "$loadgen_cpus" "$bin/ringecho-loadgen" --addr "$addr" --threads "$loadgen_threads" \
      --source-addrs "$source_addrs" \
      $(scenario_flags "$scenario") --warmup "$run_warmup" --duration "$run_duration" \
      "${witness[@]}" --server-pid "$server_pid" "$@" \
      --tag "scenario=$scenario" --tag "backend=$srv" --tag "round=$round" \
      --json "$log.json" --hgrm "$log.hgrm" >"$log.txt" 2>"$log.err" || lg_rc=$?
  if ! kill -0 "$server_pid" 2>/dev/null; then
    stop_server || true
    failed_row "$log" "$scenario" "$srv" "$round" "the server died during the run"
    return 0
  fi
  local rc=0
  stop_server || rc=$?
  if [ ! -s "$log.json" ]; then
    failed_row "$log" "$scenario" "$srv" "$round" "the loadgen could not run: $(tail -n1 "$log.err")"
    return 0
  fi
  if [ "$lg_rc" != 0 ]; then
    failed=1
    echo "compare.sh: $srv in $scenario round $round: $(grep -h 'error' "$log.err" | tail -n1)" >&2
  fi
  # Built-in servers drain and exit 0 on SIGTERM; external ones may die by the signal.
  if [ -z "${external_cmd[$srv]+x}" ] && [ "$rc" != 0 ]; then
    failed_row "$log" "$scenario" "$srv" "$round" "the server exited with $rc: $(tail -n1 "$log.server.err")"
    return 0
  fi
  printf '  %-28s %s\n' "$scenario-$srv-$round" "$(grep -E '^ *throughput ' "$log.txt" | sed 's/^ *throughput *//')" >&2
}

# sweep SERVER: the latency-load curve, one sweep per server.
sweep() {
  local srv=$1 log="$out/sweep-$srv"
  local steps=7 from=10000 to=640000 sd=1s sw=300ms
  [ "$quick" = 1 ] && { steps=3; from=5000; to=20000; sd=500ms; sw=200ms; }
  local range=(--from "$from" --to "$to" --steps "$steps")
  [ -n "$sweep_rates" ] && range=(--rates "$sweep_rates")
  if ! start_server "$srv" "$log"; then
    stop_server KILL || true
    echo "compare.sh: sweep of $srv skipped: the server $start_error" >&2
    failed=1
    return 0
  fi
  # shellcheck disable=SC2046
  taskset -c "$loadgen_cpus" "$bin/ringecho-loadgen" sweep --addr "$addr" --threads "$loadgen_threads" \
      --source-addrs "$source_addrs" \
      $(scenario_flags sweep) "${range[@]}" --duration $sd --warmup $sw \
      --server-pid "$server_pid" --tag "backend=$srv" --json "$log.json" >"$log.txt" 2>"$log.err" \
    || { failed=1; echo "compare.sh: sweep of $srv: $(tail -n1 "$log.err")" >&2; }
  kill -0 "$server_pid" 2>/dev/null || { failed=1; echo "compare.sh: $srv died during its sweep" >&2; }
  stop_server || true
  cat "$log.txt" >&2
}

for scenario in "${scenario_list[@]}"; do
  echo "scenario $scenario: $(scenario_flags "$scenario")" >&2
  if [ "$scenario" = sweep ]; then
    for srv in "${servers[@]}"; do sweep "$srv"; done
    continue
  fi
  if [[ "$scenario" == cap* ]] && [ -z "$cap_dir" ]; then
    echo "compare.sh: $scenario skipped: $cap_error" >&2
    continue
  fi
  scenario_rounds=$rounds
  for round in $(seq "$scenario_rounds"); do
    for srv in "${servers[@]}"; do
      run "$scenario" "$srv" "$round" "$warmup" "$duration"
    done
  done
  if [ "$syscalls" = 1 ] && [ "$scenario" != idle10k ] && command -v perf >/dev/null 2>&1; then
    for backend in "${servers[@]}"; do
      # Counting syscalls costs the server a little per call: a short pass of its own,
      # whose other figures are not used.
      run "$scenario" "$backend" sc 300ms 1s --count-syscalls --tag pass=syscalls
    done
  fi
done

echo >&2
reports=()
for s in "${scenario_list[@]}"; do
  [ "$s" = sweep ] && continue
  for f in "$out/$s"-*.json; do [ -e "$f" ] && reports+=("$f"); done
done
baseline=epoll
[[ " ${servers[*]} " == *" epoll "* ]] || baseline=${servers[0]}
if [ ${#reports[@]} -gt 0 ]; then
  "$bin/ringecho-perf" summarise --baseline "$baseline" --json "$out/summary.json" "${reports[@]}" \
    | tee "$out/table.txt" || failed=1
fi

plot_scenario=c1000x64
[[ ",$scenarios," == *",$plot_scenario,"* ]] || plot_scenario=${scenario_list[0]}
curves=()
for srv in "${servers[@]}"; do
  f="$out/$plot_scenario-$srv-1.hgrm"
  [ -s "$f" ] && curves+=("$srv=$f")
done
if [ "$profile" = 1 ]; then
  if ! command -v perf >/dev/null 2>&1; then
    echo "compare.sh: --profile skipped: perf is not installed (apt-get install linux-perf)" >&2
    echo "--profile skipped: perf is not installed (apt-get install linux-perf)" >"$out/profile.txt"
  else
    echo "compare.sh: profiling each server ($plot_scenario, perf record -e cpu-clock -g)" >&2
    inputs=()
    for srv in "${servers[@]}"; do
      log="$out/profile-$srv"
      if ! start_server "$srv" "$log"; then
        stop_server KILL || true
        echo "compare.sh: no profile of $srv: the server $start_error" >&2
        continue
      fi
      perf record -q -e cpu-clock -g -p "$server_pid" -o "$log.data" >"$log.perf.err" 2>&1 &
      perf_pid=$!
      sleep 0.3
      # shellcheck disable=SC2046
      taskset -c "$loadgen_cpus" "$bin/ringecho-loadgen" --addr "$addr" --threads "$loadgen_threads" \
        --source-addrs "$source_addrs" $(scenario_flags "$plot_scenario") --warmup "$warmup" \
        --duration "$duration" --server-pid "$server_pid" --json "$log.json" >"$log.txt" 2>"$log.err" || true
      kill -INT "$perf_pid" 2>/dev/null || true
      wait "$perf_pid" 2>/dev/null || true
      stop_server || true
      if perf script -i "$log.data" -F ip,sym,dso >"$log.script.txt" 2>"$log.perf.err" \
          && [ -s "$log.json" ]; then
        inputs+=("$srv=$log.script.txt,$log.json")
      else
        echo "compare.sh: no profile of $srv: $(tail -n1 "$log.perf.err")" >&2
      fi
      rm -f "$log.data"
    done
    [ ${#inputs[@]} -gt 0 ] && "$bin/ringecho-perf" profile --json "$out/profile.json" "${inputs[@]}" \
      | tee "$out/profile.txt"
    rm -f "$out"/profile-*.script.txt
  fi
fi
[ ${#curves[@]} -gt 0 ] && "$bin/ringecho-perf" plot --out "$out/latency-$plot_scenario.svg" \
  --title "echo latency, $plot_scenario ($(uname -r))" "${curves[@]}"
sweeps=()
for srv in "${servers[@]}"; do [ -s "$out/sweep-$srv.json" ] && sweeps+=("$out/sweep-$srv.json"); done
[ ${#sweeps[@]} -gt 0 ] && "$bin/ringecho-perf" plot-sweep --out "$out/latency-load.svg" \
  --title "latency against offered load ($(uname -r))" "${sweeps[@]}"
"$bin/ringecho-perf" report "$out" --baseline "$baseline" --plot-scenario "$plot_scenario"
echo "compare.sh: results in $out (report.html, table.txt, summary.json, plots, one JSON per run)"
if [ "$failed" = 1 ]; then
  echo "compare.sh: FAILED: at least one server or run failed (see the table)" >&2
  exit 1
fi
