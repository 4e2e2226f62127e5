-- Take the lease if nobody holds it. ARGV: lease (ms), who asks ("pid@host").
-- Returns {1, token} when taken, or {0, ms left on the holder's lease}.
local left = redis.call('PTTL', lease)
if left ~= -2 then
  return {0, left}
end
local token = redis.call('INCR', fence)
redis.call('SET', lease, token, 'PX', ARGV[1])
redis.call('SET', owner, ARGV[2], 'PX', ARGV[1])
return {1, token}
