-- Accept a message at the end of the queue: ARGV[1] is its JSON record, KEYS[13] the key of
-- this put's token, kept ARGV[2] seconds. Returns its id. A put sent again after a broken
-- connection (it may have been applied) finds its token and gets the same id: stored once.
local given = redis.call('GET', KEYS[13])
if given then
  return tonumber(given)
end
local id = enqueue(ARGV[1])
redis.call('SET', KEYS[13], id, 'EX', ARGV[2])
return id
