-- How reservations end, applied in the order their process ended them. Each is one ARGV, its
-- fields joined by "|" (one argument instead of eleven is what costs the client least): kind ("settle", "refund" or "lost": sent, no answer came), the reservation's name, guarded
-- ("1": a second attempt after a call that may have applied it: only if it is still in flight),
-- when it was reserved (quota seconds), and for a settle: its sequence number, the settled count
-- when it was reserved, refused ("1"/"0"), retry after, per hour, per day and remaining ("" when
-- unknown).
local function end_one(text)
  local a = {}
  for field in (text .. '|'):gmatch('([^|]*)|') do a[#a + 1] = field end
  local kind, name, started = a[1], a[2], tonumber(a[4])
  -- A reservation whose lease ran out was already counted as sent.
  local was_flying = redis.call('ZREM', F, name) == 1
  if kind ~= 'settle' then
    if was_flying then
      if kind == 'lost' then
        settle_count()
        log_request(now, started)
        set('unconf', (st.unconf or 0) + 1)
      elseif st.rem ~= nil then
        set('rem', st.rem + 1)
      end
    end
    return
  end
  if a[3] == '1' and not was_flying then return end
  local seq, before = tonumber(a[5]), tonumber(a[6])
  local refused = a[7] == '1'
  local retry_after = tonumber(a[8])
  local per_hour, per_day = tonumber(a[9]), tonumber(a[10])
  local remaining = tonumber(a[11])
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
    redis.call('ZADD', R, string.format('%.17g', now), name)
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
    if st.refusals ~= nil then set('refusals', nil) end
    if st.probe ~= nil then set('probe', nil) end
    if was_flying then log_request(now, started) end
    if remaining ~= nil then
      if trusted or st.rem == nil then
        -- Logged requests that started more than an hour ago may have left the service's
        -- window already, and are in this Remaining: they are not credited back again.
        set('hcut', now - HOUR)
        set('rem', remaining - flying)
        set('stale', now + HOUR + margin)
        if st.unconf ~= nil then set('unconf', nil) end
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
end

-- The ends are the script's last arguments, from ARGV[first] on.
local function end_all(first)
  for i = first, #ARGV do end_one(ARGV[i]) end
end
