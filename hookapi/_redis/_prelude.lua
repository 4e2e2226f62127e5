-- The shared part of every script: load the hook's state, expire what time has made
-- obsolete, the budget, and save. ARGV starts with: scale, margin, probe interval ("": the
-- pacing interval), max probe interval (quota seconds), and the most refusals the fleet may
-- provoke in any hour.
local HOUR, DAY = 3600.0, 86400.0
local HW, DW = 1.0, 360.0
local S, H, D, F, Q, W, B = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local P, R = KEYS[8], KEYS[9]
local scale = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local max_probe = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
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
-- Keys a write may have created (it added a field or a member): they get their TTL now, the
-- others at the fleet's next refresh.
local touched = {}
local function touch(key) touched[key] = true end

-- A request is logged when its answer came (the latest the service can have counted it) and
-- remembers when it started (the earliest): the two bounds of the service's own count.
local function log_request(at, started)
  local hb, db = math.floor(at / HW), math.floor(at / DW)
  if redis.call('HINCRBY', H, hb, 1) == 1 then touch(H) end
  local first = tonumber(redis.call('HGET', B, hb))
  if first == nil or started < first then
    if redis.call('HSET', B, hb, string.format('%.17g', started)) == 1 then touch(B) end
  end
  if redis.call('HINCRBY', D, db, 1) == 1 then touch(D) end
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
    if score and redis.call('HSET', P, member, score) == 1 then touch(P) end
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
  -- Every key lives a day and an hour past the fleet's last use, in real milliseconds (the
  -- refusals only an hour past the last one: older ones no longer count). The fleet refreshes
  -- them about once a minute (a hundredth of their life on a faster clock), not on every call;
  -- a key a write may have created gets its TTL at once.
  local refresh = now >= (st.ttl or -1)
  if refresh then set('ttl', now + math.min(60 * scale, (DAY + HOUR) / 100)) end
  local put, del = {}, {}
  for name, _ in pairs(dirty) do
    if st[name] == nil then del[#del + 1] = name
    else put[#put + 1] = name; put[#put + 1] = string.format('%.17g', st[name]) end
  end
  if #put > 0 and redis.call('HSET', S, unpack(put)) > 0 then touch(S) end
  if #del > 0 then redis.call('HDEL', S, unpack(del)) end
  local ttl = math.ceil((DAY + HOUR) / scale * 1000)
  if refresh then
    for _, key in ipairs(KEYS) do
      if key ~= R then redis.call('PEXPIRE', key, ttl) end
    end
  else
    for key, _ in pairs(touched) do redis.call('PEXPIRE', key, ttl) end
  end
end
