"""The Lua scripts that keep one hook's shared quota in Redis, each applied atomically.

Every script reads the time from Redis (``TIME``), so that machines with skewed clocks agree,
brings the hook's state up to date (expired leases, requests leaving the hour and the day),
changes it, and gives every key a TTL. Times inside Redis are in *quota seconds*: real seconds
times the store's time scale (1 outside tests and demos).

Keys, all under one hash tag so that Redis Cluster keeps a hook in one slot:
``state`` (hash), ``hour`` and ``day`` (hashes: time bucket -> requests counted),
``flight`` (sorted set: reservation -> lease end), ``queue`` (sorted set: waiting process ->
slots it took while others waited), ``waiting`` (sorted set: waiting process -> lease end)
``starts`` (hash: hour bucket -> when its earliest request started), ``parked`` (hash:
process that stopped waiting for a moment -> its place in the rounds) and ``refused`` (sorted
set: reservation -> when the service refused it, for the last hour; it lives an hour past its
last refusal).
"""

from __future__ import annotations

__all__ = ["BUDGET", "KEY_NAMES", "RELEASE", "RESERVE", "SETTLE"]

KEY_NAMES = (
    "state",
    "hour",
    "day",
    "flight",
    "queue",
    "waiting",
    "starts",
    "parked",
    "refused",
)

# The shared part: load the state, expire what time has made obsolete, and the budget.
_PRELUDE = r"""
local HOUR, DAY = 3600.0, 86400.0
local HW, DW = 1.0, 360.0
local S, H, D, F, Q, W, B = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local P, R = KEYS[8], KEYS[9]
local scale = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local max_probe = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = (tonumber(t[1]) + tonumber(t[2]) / 1000000) * scale

local st = {}
local raw = redis.call('HGETALL', S)
for i = 1, #raw, 2 do st[raw[i]] = tonumber(raw[i + 1]) end
local function probe_interval()
  local first = tonumber(ARGV[3])
  if first ~= nil then return first end
  if st.ph ~= nil and st.ph > 0 then return HOUR / st.ph end
  return 1
end
local dirty = {}
local function set(name, value) st[name] = value; dirty[name] = true end

-- A request is logged when its answer came (the latest the service can have counted it) and
-- remembers when it started (the earliest): the two bounds of the service's own count.
local function log_request(at, started)
  local hb, db = math.floor(at / HW), math.floor(at / DW)
  redis.call('HINCRBY', H, hb, 1)
  local first = tonumber(redis.call('HGET', B, hb))
  if first == nil or started < first then
    redis.call('HSET', B, hb, string.format('%.17g', started))
  end
  redis.call('HINCRBY', D, db, 1)
  set('hcount', (st.hcount or 0) + 1)
  set('dcount', (st.dcount or 0) + 1)
  if st.h0 == nil or hb < st.h0 then set('h0', hb) end
  if st.d0 == nil or db < st.d0 then set('d0', db) end
end

-- Drop the buckets that have left their window, oldest first; credit the hour's back to the
-- estimate of Remaining unless an adopted answer already counted them gone.
local function drop(key, first, last, count_name, credit)
  if first == nil or last < first then return first end
  local counts = {}
  if last - first > 1000 then
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local b = tonumber(all[i])
      if b <= last then counts[#counts + 1] = {b, tonumber(all[i + 1])} end
    end
  else
    for b = first, last do
      local c = redis.call('HGET', key, b)
      if c then counts[#counts + 1] = {b, tonumber(c)} end
    end
  end
  for _, bc in ipairs(counts) do
    redis.call('HDEL', key, bc[1])
    set(count_name, (st[count_name] or 0) - bc[2])
    if credit then
      local started = tonumber(redis.call('HGET', B, bc[1])) or -1e300
      redis.call('HDEL', B, bc[1])
      if st.rem ~= nil and started > (st.hcut or -1e300) then set('rem', st.rem + bc[2]) end
    end
  end
  return last + 1
end

local function settle_count()
  set('settled', (st.settled or 0) + 1)
end

local function expire()
  if st.stale ~= nil and now >= st.stale then
    set('rem', nil); set('stale', nil)
  end
  -- A reservation whose lease ran out belongs to a process that died or hung mid-request:
  -- it may have been sent, so it counts as sent.
  local dead = redis.call('ZRANGEBYSCORE', F, '-inf', now)
  if #dead > 0 then
    redis.call('ZREMRANGEBYSCORE', F, '-inf', now)
    for _ = 1, #dead do
      settle_count()
      log_request(now, -1e300)  -- when it started is lost with it: never credited back
    end
    set('unconf', (st.unconf or 0) + #dead)
  end
  -- A process that stopped asking leaves the rounds, but keeps its place for when it comes
  -- back (a busy process is late, not new); once nobody waits, the rounds start over.
  local gone = redis.call('ZRANGEBYSCORE', W, '-inf', now)
  for _, member in ipairs(gone) do
    local score = redis.call('ZSCORE', Q, member)
    if score then redis.call('HSET', P, member, score) end
    redis.call('ZREM', Q, member)
    redis.call('ZREM', W, member)
  end
  if #gone > 0 and redis.call('ZCARD', Q) == 0 then redis.call('DEL', P) end
  -- A request logged in bucket b leaves the window once the whole bucket has, plus the margin.
  local hlast = math.floor((now - HOUR - margin) / HW) - 1
  local dlast = math.floor((now - DAY - margin) / DW) - 1
  if st.h0 ~= nil and hlast >= st.h0 then set('h0', drop(H, st.h0, hlast, 'hcount', true)) end
  if st.d0 ~= nil and dlast >= st.d0 then set('d0', drop(D, st.d0, dlast, 'dcount', false)) end
end

local function in_flight() return redis.call('ZCARD', F) end

-- Spent only by requests no answer confirmed (a process died or gave up mid-request), or by
-- an estimate of Remaining that the fleet's own count says is too low (answers overtaken
-- while slots came back): one probe, a probe interval after the last answer, asks the
-- service instead of waiting for the hour.
local function stuck(b, own)
  return b + (st.unconf or 0) >= 1 or (st.rem ~= nil and st.rem < 1 and own >= 1)
end

-- When that probe may go: a probe interval after the last answer, a quarter of one when the
-- fleet's own count (which never under-counts its own requests) says there is room.
local function probe_at(b, own)
  if st.rem ~= nil and st.rem < 1 and own >= 1 then
    return (st.answered or now) + probe_interval() / 4
  end
  return (st.answered or now) + probe_interval()
end

-- The budget, and whether the next request must go alone as a probe.
local function budget(flying)
  if now < (st.blocked or -1) then return 0, false end
  if st.probe == 1 or (st.known == nil and st.rem == nil) then
    -- After a refusal, and until the first answer tells the quota: one request at a time.
    if flying == 0 then return 1, true end
    return 0, false
  end
  local own = 1e300
  if st.ph ~= nil then own = math.min(own, st.ph - (st.hcount or 0) - flying) end
  if st.pd ~= nil then own = math.min(own, st.pd - (st.dcount or 0) - flying) end
  local b = own
  if st.rem ~= nil then b = math.min(b, st.rem) end
  if b < 1 and flying == 0 and stuck(b, own) and now >= probe_at(b, own) then
    return 1, true
  end
  return b, false
end

-- The logged buckets, oldest first; with a cut, only those whose requests all started after it.
local function buckets(key, cut)
  local all = redis.call('HGETALL', key)
  local starts = {}
  if cut ~= nil then
    local raw_starts = redis.call('HGETALL', B)
    for i = 1, #raw_starts, 2 do starts[raw_starts[i]] = tonumber(raw_starts[i + 1]) end
  end
  local list = {}
  for i = 1, #all, 2 do
    if cut == nil or (starts[all[i]] or -1e300) > cut then
      list[#list + 1] = {tonumber(all[i]), tonumber(all[i + 1])}
    end
  end
  table.sort(list, function(x, y) return x[1] < y[1] end)
  return list
end

-- When the need-th logged request leaves its window (requests in flight come back last).
local function credit_time(list, width, window, need, flying)
  local seen = 0
  for _, bc in ipairs(list) do
    seen = seen + bc[2]
    if seen >= need then return (bc[1] + 1) * width + window + margin end
  end
  if need <= seen + flying then return now + window + margin + width end
  return -1
end

-- The earliest time the budget can grow; nil when only an answer can tell, -1 for never.
local function recovery(flying)
  if now < (st.blocked or -1) then return st.blocked end
  if st.probe == 1 or (st.known == nil and st.rem == nil) then return nil end
  if flying == 0 then
    local b = budget(flying)
    local own = 1e300
    if st.ph ~= nil then own = math.min(own, st.ph - (st.hcount or 0)) end
    if st.pd ~= nil then own = math.min(own, st.pd - (st.dcount or 0)) end
    if stuck(b, own) then return probe_at(b, own) end
  end
  local latest = now
  local function later(x)
    if latest == -1 or x == -1 then latest = -1 elseif x > latest then latest = x end
  end
  if st.rem ~= nil and st.rem < 1 then
    local x = credit_time(buckets(H, st.hcut or -1e300), HW, HOUR, 1 - st.rem, flying)
    if st.stale ~= nil and (x == -1 or x > st.stale) then x = st.stale end
    later(x)
  end
  if st.ph ~= nil then
    local need = 1 - (st.ph - (st.hcount or 0) - flying)
    if need > 0 then later(credit_time(buckets(H, nil), HW, HOUR, need, flying)) end
  end
  if st.pd ~= nil then
    local need = 1 - (st.pd - (st.dcount or 0) - flying)
    if need > 0 then later(credit_time(buckets(D, nil), DW, DAY, need, flying)) end
  end
  if flying > 0 then
    -- A reservation whose lease runs out (its process died) may let a probe go sooner.
    local first = redis.call('ZRANGE', F, 0, 0, 'WITHSCORES')
    local at = math.max(tonumber(first[2]), (st.answered or now) + probe_interval())
    if latest == -1 or at < latest then latest = at end
  end
  return latest
end

local function save()
  local put, del = {}, {}
  for name, _ in pairs(dirty) do
    if st[name] == nil then del[#del + 1] = name
    else put[#put + 1] = name; put[#put + 1] = string.format('%.17g', st[name]) end
  end
  if #put > 0 then redis.call('HSET', S, unpack(put)) end
  if #del > 0 then redis.call('HDEL', S, unpack(del)) end
  -- Every key lives a day and an hour past its last change, in real milliseconds; the
  -- refusals only an hour past the last one (older ones no longer count).
  local ttl = math.ceil((DAY + HOUR) / scale * 1000)
  for _, key in ipairs(KEYS) do
    if key ~= R then redis.call('PEXPIRE', key, ttl) end
  end
end
"""

# Every script's ARGV starts with: scale, margin, probe interval ("": the pacing interval), max
# probe interval (quota seconds). RESERVE's go on with: waiter, lease, poll, waiter grace (quota
# seconds), seed budget ("" when unknown), seconds the seed holds ("": an hour), and the
# reservation's name (chosen by the caller, so that a cancelled caller can give it back).
# Returns {1, reservation, settled before, probe, now} or {0, seconds to wait ("-1": never, "": ask
# again after the poll interval), reason}. Numbers travel as strings: Lua numbers become integers.
RESERVE = (
    _PRELUDE
    + r"""
local waiter = ARGV[5]
local lease, poll, grace = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if st.seq == nil and ARGV[9] ~= '' then
  -- Redis lost the hook (a restart): start from what this process knows, not from nothing,
  -- for as long as that view expects to be right.
  set('seq', 0)
  set('rem', tonumber(ARGV[9]))
  set('stale', now + math.min(HOUR + margin, tonumber(ARGV[10]) or HOUR + margin))
end
expire()
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
    redis.call('ZADD', W, now + grace, waiter)
  end
  local probe = '0'
  if probe_now then probe = '1' end
  set('seq', (st.seq or 0) + 1)
  redis.call('ZADD', F, now + lease, ARGV[11])
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
end
redis.call('ZADD', W, wake + grace, waiter)
save()
return {0, wait, reason}
"""
)

# ARGV (after the common four): reservation, settled before, refused ("1"/"0"), retry after,
# per hour, per day, remaining ("" when unknown), when it was reserved (quota seconds), its name,
# and the most refusals the fleet may provoke in any hour.
SETTLE = (
    _PRELUDE
    + r"""
local seq, before = tonumber(ARGV[5]), tonumber(ARGV[6])
local refused = ARGV[7] == '1'
local retry_after = tonumber(ARGV[8])
local per_hour, per_day, remaining = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local started = tonumber(ARGV[12])
expire()
-- A reservation whose lease ran out was already counted as sent.
local was_flying = redis.call('ZREM', F, ARGV[13]) == 1
local flying = in_flight()
local trusted = before == (st.settled or 0)
settle_count()
set('answered', now)
set('known', 1)
if per_hour ~= nil then set('ph', per_hour) end
if per_day ~= nil then set('pd', per_day) end
if refused then
  set('refusals', (st.refusals or 0) + 1)
  if retry_after == nil then
    retry_after = math.min(max_probe, probe_interval() * 2 ^ (st.refusals - 1))
  end
  set('blocked', math.max(st.blocked or -1, now + retry_after))
  -- The cap counts the fleet's refusals in the last hour, whichever process provoked them:
  -- once it is reached, nothing goes until the oldest of the last `cap` is an hour old.
  local cap = tonumber(ARGV[14])
  redis.call('ZADD', R, string.format('%.17g', now), ARGV[13])
  redis.call('ZREMRANGEBYSCORE', R, '-inf', string.format('%.17g', now - HOUR))
  redis.call('ZREMRANGEBYRANK', R, 0, -cap - 1)
  if redis.call('ZCARD', R) >= cap then
    local oldest = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
    set('blocked', math.max(st.blocked, tonumber(oldest[2]) + HOUR))
  end
  redis.call('PEXPIRE', R, math.ceil((HOUR + margin) / scale * 1000))
  set('probe', 1)
  local r = 0
  if remaining ~= nil then r = math.min(0, remaining) end
  set('rem', r - flying)
  set('stale', now + HOUR + margin)
else
  set('refusals', nil)
  set('probe', nil)
  if was_flying then log_request(now, started) end
  if remaining ~= nil then
    if trusted or st.rem == nil then
      -- Logged requests that started more than an hour ago may have left the service's
      -- window already, and are in this Remaining: they are not credited back again.
      set('hcut', now - HOUR)
      set('rem', remaining - flying)
      set('stale', now + HOUR + margin)
      set('unconf', nil)
      set('aseq', st.seq or 0)
      set('arem', remaining)
    elseif seq <= (st.aseq or 0) and remaining > (st.arem or 0) then
      -- Overtaken, yet counted before the adopted answer: it was subtracted once too often.
      set('rem', st.rem + 1)
    else
      set('rem', math.min(st.rem, remaining))
    end
  end
end
save()
return 1
"""
)

# ARGV (after the common four): the reservation's name, sent ("1"/"0"), when it was reserved.
RELEASE = (
    _PRELUDE
    + r"""
local sent = ARGV[6] == '1'
expire()
if redis.call('ZREM', F, ARGV[5]) == 1 then
  if sent then
    settle_count()
    log_request(now, tonumber(ARGV[7]))
    set('unconf', (st.unconf or 0) + 1)
  elseif st.rem ~= nil then
    set('rem', st.rem + 1)
  end
end
save()
return 1
"""
)

# ARGV: the common four. Returns the budget as a string ("inf" when nothing limits it).
BUDGET = (
    _PRELUDE
    + r"""
expire()
local b = budget(in_flight())
save()
if b >= 1e300 then return 'inf' end
return string.format('%.17g', b)
"""
)
