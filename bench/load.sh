#!/usr/bin/env bash
# Load benchmark of kefu on loopback: requests/s, p50/p99 latency, server CPU µs per push and RSS.
#
# Usage:  bench/load.sh [row ...]          (default: every row below)
# Rows:   oa-N     official account, plaintext XML, passive text reply (the peers' workload)
#         mp-N     Mini Program, plaintext JSON, reply queued in the durable outbox
#         safe-N   official account, safe mode (AES) XML, encrypted passive reply
#         with N in 10, 1000, 100000 rules (any N works: oa-5000)
#         reload   hot reload of 10,000 rules while oa-1000 load runs: failed requests and reload time
#         redis-N  Mini Program as mp-N, but TWO instances on one redis-server (store: redis://,
#                  appendonly yes, appendfsync always); wrk drives each instance with half the
#                  connections (what a round-robin load balancer does, without its own CPU); req/s
#                  is the sum, and CPU µs/push counts both kefu processes AND redis-server
# Env:    DURATION=10s WARMUP=2s THREADS=2 CONNS=32 KEFU_BIN=target/release/kefu
#         RESULTS=bench/results/<timestamp>
# The workload follows shared/bench: N keyword rules 关键词i -> 回复i, the regex rule
# 注销.*小程序 -> 命中规则：注销小程序 (priority 10) that the pushed message hits, a default rule.
# Every push has its own MsgId and openid. Only 127.0.0.1; each run is bounded by DURATION.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu}
GEN_BIN=${GEN_BIN:-$ROOT/target/release/examples/gen-pushes}
RESULTS=${RESULTS:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
PORT=${BENCH_PORT:-18110}
TOKEN=benchtoken
AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
APPID=wx0000000000000000
LINES_PER_RUN=${LINES_PER_RUN:-400000}
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
if [ ! -x "$KEFU_BIN" ] || [ ! -x "$GEN_BIN" ]; then
  cargo build --release --bin kefu --example gen-pushes >&2 || exit 1
fi

SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM -- "-$SERVER_PID" 2>/dev/null; }
trap cleanup EXIT INT TERM

session_pids() { ps -o pid= --sid "$SERVER_PID" 2>/dev/null; }
rss_kb() { ps -o rss= --sid "$SERVER_PID" 2>/dev/null | awk '{s+=$1} END{print s+0}'; }
cpu_ticks() {
  local p s=0 t
  for p in $(session_pids); do t=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) && s=$((s + t)); done
  echo "$s"
}

# write_workload DIR N KIND FORMAT MODE
write_workload() {
  local dir=$1 n=$2 kind=$3 format=$4 mode=$5
  mkdir -p "$dir/rules" "$dir/data"
  {
    echo "rules:"
    echo "  - id: bench-dereg"
    echo "    priority: 10"
    echo "    regex: '注销.*小程序'"
    echo "    reply: 命中规则：注销小程序"
    for ((i = 0; i < n; i++)); do
      echo "  - id: kw$i"
      echo "    keywords: [关键词$i]"
      echo "    reply: 回复$i"
    done
    echo "  - id: default"
    echo "    default: true"
    echo "    reply: 收到"
  } >"$dir/rules/bench.yaml"
  local key=""
  [ "$mode" != plaintext ] && key=$AES_KEY
  cat >"$dir/kefu.yaml" <<YAML
listen: "127.0.0.1:$PORT"
admin_listen: "127.0.0.1:$((PORT + 1))"
data_dir: "$dir/data"
rules_dir: "$dir/rules"
max_timestamp_skew_secs: 0
quota:
  per_user_message: 5
apps:
  - id: bench
    kind: $kind
    appid: "$APPID"
    token: "$TOKEN"
    encoding_aes_key: "$key"
    format: $format
    mode: $mode
    dry_run: true
YAML
}

start_server() {
  local dir=$1
  # The log goes beside the workload folder, not into it: the rules watcher watches the rules
  # folder's parent (to see the folder replaced), and a busy log there would wake it.
  setsid "$KEFU_BIN" serve --config "$dir/kefu.yaml" >"$dir.server.log" 2>&1 &
  SERVER_PID=$!
  local ts sig i
  ts=$(date +%s); sig=$(printf '%s\n' "$TOKEN" "$ts" 1 | LC_ALL=C sort | tr -d '\n' | sha1sum | cut -d' ' -f1)
  for i in $(seq 600); do
    [ "$(curl -s "http://127.0.0.1:$PORT/wechat/bench?signature=$sig&timestamp=$ts&nonce=1&echostr=ready" 2>/dev/null)" = ready ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited: $(tail -5 "$dir.server.log")" >&2; return 1; }
    sleep 0.1
  done
  echo "server not ready after 60 s" >&2
  return 1
}

stop_server() {
  [ -z "$SERVER_PID" ] && return
  kill -TERM -- "-$SERVER_PID" 2>/dev/null
  local i
  for i in $(seq 100); do [ -z "$(session_pids)" ] && break; sleep 0.1; done
  [ -n "$(session_pids)" ] && kill -KILL -- "-$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

# reply_check LINESFILE EXPECT -> prints ok|FAIL
reply_check() {
  local line path body out
  line=$(tail -n 1 "$1"); path=${line%%$'\t'*}; body=${line#*$'\t'}
  out=$(curl -s -X POST -H "Content-Type: $CTYPE" --data-binary "$body" "http://127.0.0.1:$PORT$path")
  if [[ "$out" == *"$2"* ]]; then echo ok; else echo "FAIL: ${out:0:120}"; fi
}

printf '| row | rules | req/s | p50 | p99 | non-2xx | sock err | idle RSS MiB | RSS after MiB | server CPU µs/req | reply check |\n' >"$RESULTS/table.md"
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n' >>"$RESULTS/table.md"

run_row() {
  local row=$1 kind format mode expect n=${1#*-}
  case "$row" in
    oa-*) kind=official_account; format=xml; mode=plaintext; expect='命中规则：注销小程序'; CTYPE=text/xml ;;
    mp-*) kind=miniprogram; format=json; mode=plaintext; expect='success'; CTYPE=application/json ;;
    safe-*) kind=official_account; format=xml; mode=safe; expect='<Encrypt>'; CTYPE=text/xml ;;
    *) echo "unknown row $row" >&2; return ;;
  esac
  local dir="$RESULTS/$row"
  write_workload "$dir" "$n" "$kind" "$format" "$mode"
  local gm=plaintext; [ "$mode" = safe ] && gm=safe
  "$GEN_BIN" "$format" "$gm" "$LINES_PER_RUN" "$TOKEN" "$AES_KEY" "$APPID" /wechat/bench >"$dir/pushes.txt"
  start_server "$dir" || { stop_server; return; }
  # The reply check uses the last line; wrk cycles through the others.
  local check_before; check_before=$(reply_check "$dir/pushes.txt" "$expect")
  sleep 1
  local idle; idle=$(rss_kb)
  export BENCH_LINES="$dir/pushes.txt" BENCH_THREADS=$THREADS BENCH_CTYPE=$CTYPE
  [ "$WARMUP" != 0 ] && BENCH_REVERSE=1 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s bench/wrk/lines.lua "http://127.0.0.1:$PORT" >/dev/null 2>&1
  local t0; t0=$(cpu_ticks)
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/wrk/lines.lua "http://127.0.0.1:$PORT" >"$dir/wrk.txt" 2>&1
  local t1; t1=$(cpu_ticks)
  local after; after=$(rss_kb)
  stop_server
  local reqs rps p50 p99 non2xx sockerr cpu
  reqs=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$dir/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$dir/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$dir/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$dir/wrk.txt"); sockerr=${sockerr:-0}
  cpu=$(awk -v a="$t0" -v b="$t1" -v r="${reqs:-0}" -v hz="$CLK_TCK" 'BEGIN{ if (r>0) printf "%.1f", (b-a)/hz*1e6/r; else print "-" }')
  rm -f "$dir/pushes.txt"
  printf '| %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f | %s | %s |\n' "$row" "$n" "${rps:-0}" "$p50" "$p99" "$non2xx" "$sockerr" \
    "$(echo "$idle/1024" | bc -l)" "$(echo "$after/1024" | bc -l)" "$cpu" "$check_before" | tee -a "$RESULTS/table.md"
}

run_reload() {
  local dir="$RESULTS/reload"
  CTYPE=text/xml
  write_workload "$dir" 1000 official_account xml plaintext
  "$GEN_BIN" xml plaintext "$LINES_PER_RUN" "$TOKEN" "$AES_KEY" "$APPID" /wechat/bench >"$dir/pushes.txt"
  start_server "$dir" || { stop_server; return; }
  export BENCH_LINES="$dir/pushes.txt" BENCH_THREADS=$THREADS BENCH_CTYPE=$CTYPE
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/wrk/lines.lua "http://127.0.0.1:$PORT" >"$dir/wrk.txt" 2>&1 &
  local wrk_pid=$!
  sleep 2
  # Replace the rules with 10,000 rules (atomic rename), then wait for the new version.
  write_workload "$dir/next" 10000 official_account xml plaintext
  mv "$dir/next/rules/bench.yaml" "$dir/rules/.bench.yaml.tmp" && mv "$dir/rules/.bench.yaml.tmp" "$dir/rules/bench.yaml"
  local i
  for i in $(seq 100); do
    curl -s "http://127.0.0.1:$PORT/healthz" | grep -q '"rules":10002' && break
    sleep 0.1
  done
  wait "$wrk_pid"
  stop_server
  local non2xx sockerr took
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$dir/wrk.txt"); sockerr=${sockerr:-0}
  took=$(grep -o 'took_ms[^ ]*' "$dir.server.log" | tail -1)
  echo "reload of 10,000 rules under load: non-2xx $non2xx, socket errors $sockerr, $took" | tee -a "$RESULTS/table.md"
  rm -f "$dir/pushes.txt"
}

# The Redis row: two instances, one redis-server, durable (appendfsync always).
run_redis_row() {
  local row=$1 n=${1#*-}
  command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install -y redis-server" >&2; return; }
  CTYPE=application/json
  local dir="$RESULTS/$row" rport=$((PORT + 20)) port_b=$((PORT + 10))
  write_workload "$dir" "$n" miniprogram json plaintext
  printf 'store: "redis://127.0.0.1:%s/0"\nredis_prefix: bench\n' "$rport" >>"$dir/kefu.yaml"
  mkdir -p "$dir/b/data" "$dir/redis"
  sed -e "s|127.0.0.1:$PORT|127.0.0.1:$port_b|" -e "s|127.0.0.1:$((PORT + 1))|127.0.0.1:$((port_b + 1))|" \
    -e "s|$dir/data|$dir/b/data|" "$dir/kefu.yaml" >"$dir/b/kefu.yaml"
  "$GEN_BIN" json plaintext "$LINES_PER_RUN" "$TOKEN" "$AES_KEY" "$APPID" /wechat/bench >"$dir/pushes.txt"
  setsid redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes \
    --appendfsync always --save '' >"$dir.redis.log" 2>&1 &
  local redis_pid=$!
  local i
  for i in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  start_server "$dir" || { stop_server; kill -TERM -- "-$redis_pid"; return; }
  local pid_a=$SERVER_PID
  local saved_port=$PORT
  PORT=$port_b
  start_server "$dir/b" || { stop_server; SERVER_PID=$pid_a; PORT=$saved_port; stop_server; kill -TERM -- "-$redis_pid"; return; }
  local pid_b=$SERVER_PID
  PORT=$saved_port
  ticks() {
    local sid p s=0 t sids=("$@")
    [ ${#sids[@]} -eq 0 ] && sids=("$pid_a" "$pid_b" "$redis_pid")
    for sid in "${sids[@]}"; do
      for p in $(ps -o pid= --sid "$sid" 2>/dev/null); do t=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) && s=$((s + t)); done
    done
    echo "$s"
  }
  local check_before; check_before=$(reply_check "$dir/pushes.txt" success)
  # Each instance gets its own pushes (different MsgIds), as a load balancer would spread them.
  awk 'NR % 2 == 1' "$dir/pushes.txt" >"$dir/pushes-a.txt"
  awk 'NR % 2 == 0' "$dir/pushes.txt" >"$dir/pushes-b.txt"
  export BENCH_THREADS=1 BENCH_CTYPE=$CTYPE
  local half=$(( (CONNS + 1) / 2 )) wa
  if [ "$WARMUP" != 0 ]; then
    BENCH_REVERSE=1 BENCH_LINES="$dir/pushes-a.txt" wrk -t1 -c"$half" -d"$WARMUP" -s bench/wrk/lines.lua "http://127.0.0.1:$PORT" >/dev/null 2>&1 &
    wa=$!
    BENCH_REVERSE=1 BENCH_LINES="$dir/pushes-b.txt" wrk -t1 -c"$half" -d"$WARMUP" -s bench/wrk/lines.lua "http://127.0.0.1:$port_b" >/dev/null 2>&1
    wait "$wa"
  fi
  local t0 r0; t0=$(ticks); r0=$(ticks "$redis_pid")
  BENCH_LINES="$dir/pushes-a.txt" wrk -t1 -c"$half" -d"$DURATION" --latency -s bench/wrk/lines.lua "http://127.0.0.1:$PORT" >"$dir/wrk-a.txt" 2>&1 &
  wa=$!
  BENCH_LINES="$dir/pushes-b.txt" wrk -t1 -c"$half" -d"$DURATION" --latency -s bench/wrk/lines.lua "http://127.0.0.1:$port_b" >"$dir/wrk-b.txt" 2>&1
  wait "$wa"
  local t1 r1; t1=$(ticks); r1=$(ticks "$redis_pid")
  local rss_a rss_b
  rss_a=$(ps -o rss= --sid "$pid_a" | awk '{s+=$1} END{print s+0}')
  rss_b=$(ps -o rss= --sid "$pid_b" | awk '{s+=$1} END{print s+0}')
  local depth; depth=$(redis-cli -p "$rport" HLEN 'bench:{bench}:ob:s')
  # Where redis-server's time went, per command and script (usec_per_call).
  redis-cli -p "$rport" INFO commandstats >"$dir/commandstats.txt" 2>&1
  SERVER_PID=$pid_b; stop_server
  SERVER_PID=$pid_a; stop_server
  kill -TERM -- "-$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null
  local reqs rps p50 p99 non2xx sockerr cpu
  reqs=$(cat "$dir"/wrk-?.txt | awk '/requests in/ {s+=$1} END{print s+0}')
  rps=$(cat "$dir"/wrk-?.txt | awk '/Requests\/sec/ {s+=$2} END{printf "%d", s}')
  p50=$(awk '$1=="50%" {print $2}' "$dir/wrk-a.txt")
  p99=$(awk '$1=="99%" {print $2}' "$dir/wrk-a.txt")
  non2xx=$(cat "$dir"/wrk-?.txt | awk '/Non-2xx/ {s+=$NF} END{print s+0}')
  sockerr=$(cat "$dir"/wrk-?.txt | awk '/Socket errors/ {gsub(",",""); s+=$4+$6+$8+$10} END{print s+0}')
  cpu=$(awk -v a="$t0" -v b="$t1" -v r="${reqs:-0}" -v hz="$CLK_TCK" 'BEGIN{ if (r>0) printf "%.1f", (b-a)/hz*1e6/r; else print "-" }')
  local rcpu; rcpu=$(awk -v a="$r0" -v b="$r1" -v r="${reqs:-0}" -v hz="$CLK_TCK" 'BEGIN{ if (r>0) printf "%.1f", (b-a)/hz*1e6/r; else print "-" }')
  cpu="$cpu, of which redis-server $rcpu"
  rm -f "$dir/pushes.txt" "$dir/pushes-a.txt" "$dir/pushes-b.txt"
  printf '| %s | %s | %s | %s | %s | %s | %s | — | %.1f | %s (incl. redis-server; outbox left: %s) | %s |\n' "$row" "$n" "${rps:-0}" "$p50" "$p99" "$non2xx" "$sockerr" \
    "$(echo "($rss_a+$rss_b)/1024" | bc -l)" "$cpu" "$depth" "$check_before" | tee -a "$RESULTS/table.md"
}

ROWS=("$@")
[ ${#ROWS[@]} -eq 0 ] && ROWS=(oa-10 oa-1000 oa-100000 mp-10 mp-1000 mp-100000 safe-10 safe-1000 safe-100000 reload redis-1000)
for row in "${ROWS[@]}"; do
  case "$row" in
    reload) run_reload ;;
    redis-*) run_redis_row "$row" ;;
    *) run_row "$row" ;;
  esac
done
echo "results: $RESULTS/table.md"
