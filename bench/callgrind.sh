#!/usr/bin/env bash
# callgrind.sh BIN...: user-space instructions per push of each kefu binary, on the peers'
# workload, counted by callgrind: exact where CPU seconds on this noisy 2-core machine are not.
#
# For each binary: start it under `valgrind --tool=callgrind` with the peers' kefu/run.sh
# (official account, plaintext XML, 1,000 keyword rules), warm up with 5 s of `wrk -t1 -c8`,
# zero the counters, run 20 s more, dump, and print the instructions (Ir, all threads) divided
# by the requests answered. Kernel work (the TCP exchange, the WAL's writes) is not counted,
# and `rep stos`/`rep movs` count per byte, so compare builds with each other, not with CPU
# seconds. The dump stays in $OUT_DIR/BASENAME.cg.1 for `callgrind_annotate --inclusive=yes`.
#
# BENCH_DIR is a copy of ../shared/bench, as for ab.sh. Needs valgrind, wrk and curl.
set -u
. "$(dirname "$0")/work-dir.sh"
warmup="$(cd "$(dirname "$0")" && pwd)/wrk/warmup-post.lua"
cd "${BENCH_DIR:?set BENCH_DIR to a copy of ../shared/bench}"
out_dir=${OUT_DIR:-/tmp}
port=${BENCH_PORT:-18020}
for bin in "$@"; do
  name=$(basename "$(dirname "$(dirname "$bin")")")
  out="$out_dir/$name.cg"
  rm -f "$out" "$out".*
  wrapper=$(mktemp)
  # The allocator options set here keep kefu from re-executing itself (see src/main.rs), which
  # valgrind would not follow.
  printf '#!/bin/sh\nexport MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0\nexec valgrind --tool=callgrind --callgrind-out-file=%s %s "$@"\n' \
    "$out" "$bin" >"$wrapper"
  chmod +x "$wrapper"
  KEFU_BIN=$wrapper BENCH_PORT=$port setsid kefu/run.sh >"$out_dir/$name.cg.log" 2>&1 &
  pid=$!
  Q=$(common/sign.sh benchtoken)
  url="http://127.0.0.1:$port/wechat?$Q"
  for _ in $(seq 300); do
    [ "$(curl -s --max-time 2 "$url&echostr=ready")" = ready ] && break
    sleep 0.5
  done
  # MsgIds of its own (see wrk/warmup-post.lua): every counted push is a new one.
  wrk -t1 -c8 -d5s -s "$warmup" "$url" >/dev/null 2>&1
  vpid=$(pgrep -f "callgrind-out-file=$out " | head -1)
  work=$(work_dir "$vpid")
  callgrind_control -z "$vpid" >/dev/null
  wrk -t1 -c8 -d20s -s wrk/post.lua "$url" >"$out_dir/$name.cg.wrk" 2>&1
  callgrind_control -d "$vpid" >/dev/null
  kill -TERM -- -"$pid" 2>/dev/null
  sleep 2
  kill -KILL -- -"$pid" 2>/dev/null
  rm -f "$wrapper"
  remove_work_dir "$work"
  reqs=$(grep -oE "^ +[0-9]+ requests" "$out_dir/$name.cg.wrk" | grep -oE "[0-9]+")
  ir=$(callgrind_annotate "$out.1" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | grep -oE "^[0-9,]+" | tr -d ,)
  echo "$name requests $reqs instructions/push $((ir / reqs))"
done
