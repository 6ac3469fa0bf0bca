-- commit.lua: everything one push changes, at once (SPEC §8).
-- KEYS: 1 push memo/lease, 2 session, 3 quota, 4 ob:m, 5 ob:s, 6 ob:due, 7 ob:q:<openid>,
--       8 ob:seq, 9 log
-- ARGV: 1 lease token, 2 memo, 3 memo ttl ms, 4 session mode keep|del|set, 5 session value,
--       6 session expiry (unix ms), 7 session seen ('' = none), 8 compare session 1|0,
--       9 quota trigger ''|u|e, 10 trigger's limit, 11 trigger's window ms, 12 openid,
--       13 log retention ms, 14 log line (json), 15 reason: no window, 16 reason: used (u),
--       17 reason: used (e), 18 this instance (owner), 19 outbox lease ms, 20 n messages,
--       then per message: entry json, summary
-- An entry that becomes its user's head is leased to this instance at once (fence 1), so the
-- accepting instance sends it without a claim; the reply lists those as message index, id.
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, 2) == 'D|' then return {'REPLAY', string.sub(cur, 3)} end
  if ARGV[1] == '' or cur ~= 'P|' .. ARGV[1] then return {'LOST'} end
end
if ARGV[8] == '1' then
  local s = redis.call('GET', KEYS[2]) or ''
  if s ~= ARGV[7] then return {'CONFLICT'} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- the send window: a trigger resets it, never adds to it
local n = tonumber(ARGV[20])
local admitted = 0
local reason = ''
local tr, lim, used, untl
if ARGV[9] ~= '' then
  tr = ARGV[9]; lim = tonumber(ARGV[10]); used = 0; untl = now + tonumber(ARGV[11])
else
  local q = redis.call('HMGET', KEYS[3], 'tr', 'lim', 'used', 'until')
  if q[1] and tonumber(q[4]) > now then
    tr = q[1]; lim = tonumber(q[2]); used = tonumber(q[3]); untl = tonumber(q[4])
  end
end
if tr then
  local left = lim - used
  if left < 0 then left = 0 end
  admitted = math.min(n, left)
  if admitted < n then
    if tr == 'e' then reason = ARGV[17] else reason = ARGV[16] end
  end
  if ARGV[9] ~= '' or admitted > 0 then
    redis.call('HSET', KEYS[3], 'tr', tr, 'lim', lim, 'used', used + admitted, 'until', untl)
    redis.call('PEXPIREAT', KEYS[3], untl)
  end
elseif n > 0 then
  reason = ARGV[15]
end
-- the outbox: one entry per admitted message, in order behind the user's earlier ones
local minid = now - tonumber(ARGV[13])
local leased = {}
local at = math.floor(now / 1000)
for i = 1, n do
  local entry = ARGV[20 + 2 * i - 1]
  local summary = ARGV[20 + 2 * i]
  if i <= admitted then
    local id = redis.call('INCR', KEYS[8])
    redis.call('HSET', KEYS[4], id, entry)
    redis.call('RPUSH', KEYS[7], id)
    if redis.call('LLEN', KEYS[7]) == 1 then
      redis.call('HSET', KEYS[5], id, '1|' .. ARGV[18] .. '|0|' .. now .. '|' .. now .. '|0')
      redis.call('ZADD', KEYS[6], now + tonumber(ARGV[19]), ARGV[12])
      leased[#leased + 1] = i
      leased[#leased + 1] = id
    else
      redis.call('HSET', KEYS[5], id, '0||0|' .. now .. '|0|0')
    end
  else
    redis.call('XADD', KEYS[9], 'MINID', '~', minid, '*', 'k', 's', 'v',
      cjson.encode({at = at, openid = ARGV[12], outcome = 'dropped', reason = reason, summary = summary}))
  end
end
-- the session
if ARGV[4] == 'del' then
  redis.call('DEL', KEYS[2])
elseif ARGV[4] == 'set' then
  redis.call('SET', KEYS[2], ARGV[5], 'PXAT', ARGV[6])
end
redis.call('XADD', KEYS[9], 'MINID', '~', minid, '*', 'k', 'm', 'v', ARGV[14])
redis.call('SET', KEYS[1], 'D|' .. ARGV[2], 'PX', ARGV[3])
return {'OK', admitted, reason, now, leased}
