-- Forget dead letter ARGV[1]. Returns 1, or 0 if there is no such dead letter.
if redis.call('ZREM', dead, ARGV[1]) == 0 then
  return 0
end
forget(ARGV[1])
redis.call('INCR', deadver)
return 1
