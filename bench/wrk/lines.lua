-- wrk script: POST pre-generated pushes, one per line of $BENCH_LINES ("PATH?QUERY<TAB>BODY").
-- Each wrk thread takes every THREADS-th line, so no two requests repeat a MsgId until the
-- file wraps around (make it longer than the run). BENCH_REVERSE=1 walks the file from its end,
-- for a warm-up whose pushes the measured run (from the start) does not repeat: a repeat is a
-- dedupe replay, answered from its memo at a fraction of a push's cost.
local path = os.getenv("BENCH_LINES")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local ctype = os.getenv("BENCH_CTYPE") or "text/xml"
local reverse = os.getenv("BENCH_REVERSE") == "1"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local reqs = {}
local n = 0
function init(args)
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == (tid - 1) then
      local tab = line:find("\t", 1, true)
      n = n + 1
      reqs[n] = wrk.format("POST", line:sub(1, tab - 1), { ["Content-Type"] = ctype }, line:sub(tab + 1))
    end
    i = i + 1
  end
end
local k = 0
function request()
  if reverse then
    k = (k - 2) % n + 1
    if k < 1 then k = n end
  else
    k = k % n + 1
  end
  return reqs[k]
end
