-- Take one request's slot for this process, after ending the reservations it ended since
-- its last call (they ride with it: one round trip a post).
--
-- ARGV after the common five: waiter, lease, poll, waiter grace (quota seconds), seed budget
-- ("" when unknown), seconds the seed holds ("": an hour), the reservation's name (chosen by
-- the caller, so that a cancelled caller can give it back), then the reservations it ends,
-- each as `end_one` reads it.
-- Returns {1, reservation, settled before, probe, now} or {0, seconds to wait ("-1": never, "":
-- ask again after the poll interval), reason}. Numbers travel as strings: Lua numbers become
-- integers.
local waiter = ARGV[6]
local lease, poll, grace = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if st.seq == nil and ARGV[10] ~= '' then
  -- Redis lost the hook (a restart): start from what this process knows, not from nothing,
  -- for as long as that view expects to be right.
  set('seq', 0)
  set('rem', tonumber(ARGV[10]))
  set('stale', now + math.min(HOUR + margin, tonumber(ARGV[11]) or HOUR + margin))
end
expire()
end_all(13)
local flying = in_flight()
local b, probe_now = budget(flying)
-- The fleet's queue serves waiting processes in rounds: a process's score counts the slots
-- it took while others waited, and no process takes one while another has taken fewer.
-- A newcomer joins at the lowest score, so that it neither jumps nor owes a backlog.
local mine = redis.call('ZSCORE', Q, waiter)
if mine == false and redis.call('ZCARD', Q) > 0 then
  local low = tonumber(redis.call('ZRANGE', Q, 0, 0, 'WITHSCORES')[2])
  local parked = tonumber(redis.call('HGET', P, waiter))
  if parked ~= nil and parked > low then low = parked end
  redis.call('HDEL', P, waiter)
  mine = string.format('%.17g', low)
  redis.call('ZADD', Q, mine, waiter)
end
local ahead = 0
if mine ~= false then
  mine = tonumber(mine)
  ahead = redis.call('ZCOUNT', Q, '-inf', '(' .. string.format('%.17g', mine))
end
if b >= 1 and ahead == 0 then
  if mine ~= false then
    redis.call('ZADD', Q, mine + 1, waiter)
    -- It keeps its turn while its next caller comes (at once, or when an answer frees one
    -- of its tasks); if none comes, it leaves the rounds after the grace.
    if redis.call('ZADD', W, now + grace, waiter) == 1 then touch(W) end
  end
  local probe = '0'
  if probe_now then probe = '1' end
  set('seq', (st.seq or 0) + 1)
  redis.call('ZADD', F, now + lease, ARGV[12])
  if flying == 0 then touch(F) end
  if st.rem ~= nil then set('rem', st.rem - 1) end
  save()
  return {1, tostring(st.seq), tostring(st.settled or 0), probe, string.format('%.17g', now)}
end
local reason
if now < (st.blocked or -1) then
  reason = 'refused ' .. tostring(st.refusals or 0) .. ' time(s) by the service'
elseif b >= 1 then
  reason = tostring(ahead) .. ' process(es) ahead in the queue'
else
  reason = 'remaining=' .. tostring(st.rem) .. ', in flight=' .. tostring(flying) ..
    ', per hour=' .. tostring(st.ph) .. ', per day=' .. tostring(st.pd)
end
local wake
local wait = ''
if b >= 1 then
  wake = now + poll  -- the budget is there, for the processes ahead in the queue
else
  local at = recovery(flying)
  if at == nil then
    wake = now + poll
  elseif at == -1 then
    wait = '-1'
    wake = now + poll
  else
    wake = math.max(at, now)
    -- An answer still in flight may give slots back sooner: ask again then.
    if flying > 0 then wake = math.min(wake, now + poll) end
    wait = string.format('%.17g', wake - now)
  end
end
if mine == false then
  redis.call('ZADD', Q, 0, waiter)
  touch(Q)
end
if redis.call('ZADD', W, wake + grace, waiter) == 1 then touch(W) end
save()
return {0, wait, reason}
