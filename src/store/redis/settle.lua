-- settle.lua: what became of a claimed entry, accepted only from the fence's holder.
-- KEYS: 1 ob:due, 2 ob:m, 3 ob:s, 4 ob:q:<openid>, 5 ob:failed, 6 log
-- ARGV: 1 id, 2 fence, 3 sent|failed|retry, 4 next attempt ms, 5 errcode ('' none),
--       6 reason, 7 openid, 8 retention ms, 9 app
local function split(s)
  local r = {}
  for part in (s .. '|'):gmatch('(.-)|') do r[#r + 1] = part end
  return r
end
local st = redis.call('HGET', KEYS[3], ARGV[1])
if not st then return 'GONE' end
local f = split(st)
if f[1] ~= ARGV[2] then return 'STALE' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local msg = redis.call('HGET', KEYS[2], ARGV[1]) or '{}'
local ok, decoded = pcall(cjson.decode, msg)
local summary = ''
if ok and type(decoded) == 'table' and type(decoded.summary) == 'string' then summary = decoded.summary end
local errcode = nil
if ARGV[5] ~= '' then errcode = tonumber(ARGV[5]) end
local reason = nil
if ARGV[6] ~= '' then reason = ARGV[6] end
local outcome
local attempts = tonumber(f[3]) + 1
if ARGV[3] == 'retry' then
  outcome = 'retrying'
  redis.call('HSET', KEYS[3], ARGV[1], f[1] .. '||' .. attempts .. '|' .. f[4] .. '|' .. f[5] .. '|0')
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[7])
else
  outcome = ARGV[3]
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('LREM', KEYS[4], 1, ARGV[1])
  if redis.call('LLEN', KEYS[4]) > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[7])
  else
    redis.call('ZREM', KEYS[1], ARGV[7])
  end
  if outcome == 'failed' then
    redis.call('ZADD', KEYS[5], now, cjson.encode({id = tonumber(ARGV[1]), app = ARGV[9], openid = ARGV[7],
      preview = summary, attempts = attempts, errcode = errcode, reason = reason or '',
      created_ms = tonumber(f[4]), failed_ms = now}))
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[8]))
  end
end
redis.call('XADD', KEYS[6], 'MINID', '~', now - tonumber(ARGV[8]), '*', 'k', 's', 'v',
  cjson.encode({at = math.floor(now / 1000), openid = ARGV[7], outbox_id = tonumber(ARGV[1]),
    outcome = outcome, errcode = errcode, reason = reason, summary = summary}))
return 'OK'
