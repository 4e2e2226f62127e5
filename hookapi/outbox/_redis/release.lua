-- Give up the lease of ARGV[1] (the token), so that another process takes over at once.
if not holds(ARGV[1]) then
  return 0
end
redis.call('DEL', lease, owner)
return 1
