-- Put dead letter ARGV[1] back at the end of the queue, with ARGV[2] its new expiry ("": none),
-- at once, so that two processes retrying it send it once. Returns {new id, text}, or 0 if
-- there is no such dead letter.
if redis.call('ZREM', dead, ARGV[1]) == 0 then
  return 0
end
local record = cjson.decode(redis.call('HGET', msgs, ARGV[1]))
forget(ARGV[1])
redis.call('INCR', deadver)
if ARGV[2] == '' then
  record['e'] = cjson.null
else
  record['e'] = tonumber(ARGV[2])
end
return {enqueue(cjson.encode(record)), record['t']}
