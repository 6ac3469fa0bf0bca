#!/usr/bin/env bash
# ab.sh BIN...: server CPU per push of each kefu binary in turn, on the peers' workload.
#
# For each binary: start it with the peers' kefu/run.sh (official account, plaintext XML, 1,000
# keyword rules), warm up with 2 s of wrk, then `wrk -t2 -c32 -d10s` with a fresh MsgId per
# request, and print the server's CPU (utime+stime from /proc) per request, req/s, and the store
# writer thread's share. Give the same binaries twice (A B A B) to see the noise: on a 2-core
# machine shared with wrk, one run says little.
#
# BENCH_DIR is a copy of ../shared/bench (cp -r ../shared/bench/. "$BENCH_DIR"; shared/ may be
# read-only). Needs wrk and curl.
set -u
. "$(dirname "$0")/work-dir.sh"
warmup="$(cd "$(dirname "$0")" && pwd)/wrk/warmup-post.lua"
cd "${BENCH_DIR:?set BENCH_DIR to a copy of ../shared/bench}"
for bin in "$@"; do
  export KEFU_BIN=$bin BENCH_PORT=${BENCH_PORT:-18010}
  setsid kefu/run.sh >/tmp/ab-server.log 2>&1 &
  pid=$!
  Q=$(common/sign.sh benchtoken)
  url="http://127.0.0.1:$BENCH_PORT/wechat?$Q"
  for _ in $(seq 150); do
    [ "$(curl -s --max-time 1 "$url&echostr=ready")" = ready ] && break
    sleep 0.2
  done
  kpid=$(pgrep -s "$pid" -x kefu | head -1)
  work=$(work_dir "$kpid")
  # MsgIds of its own (see wrk/warmup-post.lua): every measured push is a new one.
  wrk -t2 -c32 -d2s -s "$warmup" "$url" >/dev/null 2>&1
  t0=$(awk '{print $14+$15}' "/proc/$kpid/stat")
  wtask=$(grep -l "kefu-store-writ" /proc/"$kpid"/task/*/comm | head -1 | xargs dirname)
  w0=$(awk '{print $14+$15}' "$wtask/stat")
  wrk -t2 -c32 -d10s -s wrk/post.lua "$url" >/tmp/ab-wrk.txt 2>&1
  t1=$(awk '{print $14+$15}' "/proc/$kpid/stat")
  w1=$(awk '{print $14+$15}' "$wtask/stat")
  reqs=$(grep -oE "^ +[0-9]+ requests" /tmp/ab-wrk.txt | grep -oE "[0-9]+")
  rps=$(grep "Requests/sec" /tmp/ab-wrk.txt | awk '{print $2}')
  # clock ticks are 10 ms: µs per push = ticks * 10,000 / requests, one decimal
  echo "$bin: server $(((t1 - t0) * 10000 / reqs)).$(((t1 - t0) * 100000 / reqs % 10)) µs/push," \
    "writer $(((w1 - w0) * 10000 / reqs)).$(((w1 - w0) * 100000 / reqs % 10)) µs/push, $rps req/s"
  kill -TERM -- -"$pid" 2>/dev/null
  sleep 1
  kill -KILL -- -"$pid" 2>/dev/null || true
  remove_work_dir "$work"
done
