-- settle.lua: what became of a claimed entry, accepted only from the fence's holder.
-- KEYS: 1 ob:due, 2 ob:m, 3 ob:s, 4 ob:q:<openid>, 5 ob:failed, 6 log
-- ARGV: 1 id, 2 fence, 3 sent|failed|retry, 4 next attempt ms, 5 openid, 6 retention ms,
--       7 the send-log line (json), 8 the failed entry (json, failed only), 9 now (unix ms,
--       the caller's clock: only for the log's and the failure list's order)
-- (No cjson here: the caller builds both lines, which halves the script's cost.)
local st = redis.call('HGET', KEYS[3], ARGV[1])
if not st then return 'GONE' end
local fence = string.match(st, '^([^|]*)|')
if fence ~= ARGV[2] then return 'STALE' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == 'retry' then
  local f = {}
  for part in (st .. '|'):gmatch('(.-)|') do f[#f + 1] = part end
  redis.call('HSET', KEYS[3], ARGV[1], f[1] .. '||' .. (tonumber(f[3]) + 1) .. '|' .. f[4] .. '|' .. f[5] .. '|0')
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('LREM', KEYS[4], 1, ARGV[1])
  if redis.call('LLEN', KEYS[4]) > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[5])
  else
    redis.call('ZREM', KEYS[1], ARGV[5])
  end
  if ARGV[3] == 'failed' then
    redis.call('ZADD', KEYS[5], ARGV[9], ARGV[8])
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[6]))
  end
end
redis.call('XADD', KEYS[6], 'MINID', '~', now - tonumber(ARGV[6]), '*', 'k', 's', 'v', ARGV[7])
return 'OK'
