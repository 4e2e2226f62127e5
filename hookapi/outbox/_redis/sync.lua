-- What a process learns at each look: ARGV[1] is the dead letters' version it has, ARGV[2..]
-- the ids of the messages it put and waits for. Returns {version, outcomes, dead letters}:
-- the outcome of each id (nil while it is not ended), and when the version changed, every
-- dead letter as {id, record, state, reason, ...} (nil when it did not).
local version = redis.call('GET', deadver) or '0'
local outcomes = {}
if #ARGV > 1 then
  outcomes = redis.call('HMGET', outcome, unpack(ARGV, 2))
end
if version == ARGV[1] then
  return {version, outcomes}
end
local letters = {}
for _, id in ipairs(redis.call('ZRANGE', dead, 0, -1)) do
  letters[#letters + 1] = id
  letters[#letters + 1] = redis.call('HGET', msgs, id)
  letters[#letters + 1] = redis.call('HGET', state, id)
  letters[#letters + 1] = redis.call('HGET', reason, id) or ''
end
return {version, outcomes, letters}
