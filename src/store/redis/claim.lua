-- claim.lua: leases the due head entry of up to `limit` users of one app (SPEC §8 lease queue).
-- A claim bumps the entry's fence; an entry whose previous lease expired is marked interrupted.
-- KEYS: 1 ob:due, 2 ob:m, 3 ob:s
-- ARGV: 1 limit, 2 lease ms, 3 owner, 4 queue key prefix (…ob:q:)
-- state (ob:s): fence|owner|attempts|created_ms|first_attempt_ms|interrupted
local function split(s)
  local r = {}
  for part in (s .. '|'):gmatch('(.-)|') do r[#r + 1] = part end
  return r
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, u in ipairs(users) do
  local q = ARGV[4] .. u
  local id = redis.call('LINDEX', q, 0)
  if not id then
    redis.call('ZREM', KEYS[1], u)
  else
    local st = redis.call('HGET', KEYS[3], id)
    local msg = redis.call('HGET', KEYS[2], id)
    if (not st) or (not msg) then
      redis.call('LPOP', q)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      if redis.call('LLEN', q) > 0 then redis.call('ZADD', KEYS[1], now, u) else redis.call('ZREM', KEYS[1], u) end
    else
      local f = split(st)
      local fence = tonumber(f[1]) + 1
      local interrupted = f[6]
      if f[2] ~= '' then interrupted = '1' end
      local first = f[5]
      if first == '0' then first = tostring(now) end
      redis.call('HSET', KEYS[3], id, fence .. '|' .. ARGV[3] .. '|' .. f[3] .. '|' .. f[4] .. '|' .. first .. '|' .. interrupted)
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), u)
      out[#out + 1] = {id, tostring(fence), f[3], f[4], first, interrupted, msg}
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = '-1'
if nxt[2] then next_due = nxt[2] end
return {tostring(now), next_due, redis.call('HLEN', KEYS[3]), out}
