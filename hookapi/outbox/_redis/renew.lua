-- Extend the lease of ARGV[1] (the token) by ARGV[2] ms. Returns 1, or 0 if it is not held.
if not holds(ARGV[1]) then
  return 0
end
redis.call('PEXPIRE', lease, ARGV[2])
redis.call('PEXPIRE', owner, ARGV[2])
return 1
