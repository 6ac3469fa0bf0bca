-- wrk script for warming up on the peers' workload (ab.sh, callgrind.sh): the request of the
-- peers' wrk/post.lua with MsgIds of their own. post.lua numbers every run's MsgIds from the same
-- start, so a warm-up with it would make the first pushes of the measured run repeats, answered
-- from their memos (a dedupe replay costs a fraction of a push).
local path = os.getenv("BENCH_BODY_FILE") or "common/msg.xml"
local f = assert(io.open(path, "rb"))
local template = f:read("*a")
f:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"
wrk.headers["User-Agent"] = "Mozilla/4.0"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local counter = 0
function request()
  counter = counter + 1
  -- post.lua uses 7 + thread; 3 + thread never meets it.
  local id = string.format("%d%012d", 3 + (tid or 0), counter)
  local body = template:gsub("<MsgId>%d+</MsgId>", "<MsgId>" .. id .. "</MsgId>")
  return wrk.format(nil, nil, nil, body)
end
