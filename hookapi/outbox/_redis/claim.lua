-- The queue after id ARGV[2], for the holder of token ARGV[1], at most ARGV[3] messages.
-- Returns -1 if the token does not hold the lease, else {id, record, state, ...} in order.
if not holds(ARGV[1]) then
  return -1
end
local ids = redis.call('ZRANGEBYSCORE', live, '(' .. ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])
local found = {}
for _, id in ipairs(ids) do
  found[#found + 1] = id
  found[#found + 1] = redis.call('HGET', msgs, id)
  found[#found + 1] = redis.call('HGET', state, id)
end
return found
