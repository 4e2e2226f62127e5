-- Take the lease if nobody holds it, or keep it if ARGV[3] (this process's last token, or "")
-- still holds it (Redis was away for less than the lease). ARGV: lease (ms), who asks
-- ("pid@host"), last token, a random nonce. Returns {1, token} when held, or {0, ms left on
-- the holder's}. A token is the fence counter and the nonce: unique even if Redis lost the
-- counter (a restart without persistence), so that no old holder's token matches a new one.
if ARGV[3] ~= '' and holds(ARGV[3]) then
  redis.call('PEXPIRE', lease, ARGV[1])
  redis.call('SET', owner, ARGV[2], 'PX', ARGV[1])
  return {1, ARGV[3]}
end
local left = redis.call('PTTL', lease)
if left ~= -2 then
  return {0, left}
end
local token = redis.call('INCR', fence) .. ':' .. ARGV[4]
redis.call('SET', lease, token, 'PX', ARGV[1])
redis.call('SET', owner, ARGV[2], 'PX', ARGV[1])
return {1, token}
