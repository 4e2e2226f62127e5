-- End message ARGV[2] for token ARGV[1]: ARGV[3] is delivered, dropped, failed or unknown,
-- ARGV[4] the reason kept with a dead letter, ARGV[5] the outcome told to the process that
-- put it, kept ARGV[6] seconds. Returns -1 if the token does not hold the lease, 0 if the
-- message was not queued (ended already), else 1.
if not holds(ARGV[1]) then
  return -1
end
local id, kind = ARGV[2], ARGV[3]
if redis.call('ZREM', live, id) == 0 then
  return 0
end
if kind == 'failed' or kind == 'unknown' then
  redis.call('ZADD', dead, id, id)
  redis.call('HSET', state, id, kind)
  redis.call('HSET', reason, id, ARGV[4])
  redis.call('INCR', deadver)
else
  forget(id)
end
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
local keep = tonumber(ARGV[6])
redis.call('HSET', outcome, id, ARGV[5])
redis.call('ZADD', outcome_at, at, id)
local old = redis.call('ZRANGEBYSCORE', outcome_at, '-inf', at - keep, 'LIMIT', 0, 100)
for _, gone in ipairs(old) do
  redis.call('HDEL', outcome, gone)
  redis.call('ZREM', outcome_at, gone)
end
local ms = math.floor(keep * 1000)
redis.call('PEXPIRE', outcome, ms)
redis.call('PEXPIRE', outcome_at, ms)
return 1
