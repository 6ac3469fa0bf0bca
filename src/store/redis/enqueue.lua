-- enqueue.lua: moves one unsent entry of a local SQLite outbox into Redis, once (start-up, when
-- a deployment switches from sqlite to redis). The marker makes a repeated move a no-op.
-- KEYS: 1 marker, 2 ob:m, 3 ob:s, 4 ob:due, 5 ob:q:<openid>, 6 ob:seq
-- ARGV: 1 entry json, 2 openid, 3 created ms, 4 attempts
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', 604800000) == false then return 0 end
local id = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('HSET', KEYS[3], id, '0||' .. ARGV[4] .. '|' .. ARGV[3] .. '|0|0')
redis.call('RPUSH', KEYS[5], id)
if redis.call('LLEN', KEYS[5]) == 1 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[4], tonumber(t[1]) * 1000, ARGV[2])
end
return 1
