-- Record that message ARGV[2] is being sent or queued again (ARGV[3]), for token ARGV[1].
-- Returns -1 if the token does not hold the lease, 0 if the message is not queued, else 1.
if not holds(ARGV[1]) then
  return -1
end
if not redis.call('ZSCORE', live, ARGV[2]) then
  return 0
end
redis.call('HSET', state, ARGV[2], ARGV[3])
return 1
