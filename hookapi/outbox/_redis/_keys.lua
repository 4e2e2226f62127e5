-- The keys of one hook's shared outbox, in the order every script is given them, and the
-- fencing check. Every script of the outbox starts with this file.
--
-- seq (string): the last id given; ids grow in the order Redis accepted the messages.
-- msgs (hash): id -> the message as JSON ({"t": text, "e": expiry in wall-clock seconds}).
-- state (hash): id -> queued | sending | failed | unknown.
-- reason (hash): id -> why a dead letter is one.
-- live (sorted set): the ids queued or being sent, scored by id: the queue, in order.
-- dead (sorted set): the dead letters' ids, scored by id.
-- deadver (string): counts changes to the dead letters, so that readers fetch them on change.
-- lease (string, expires): the fencing token ("counter:nonce") of the process delivering.
-- fence (string): the counter of the tokens given, so that each new one is larger.
-- owner (string, expires with the lease): who holds the lease ("pid@host"), for operators.
-- outcome (hash, expires): id -> how a message ended, for the process that put it.
-- outcome_at (sorted set, expires): id -> when it ended (Redis time), to trim old outcomes.
-- put:<token> (strings, expire after a minute): the id a put got, so that one sent again
-- after a broken connection is stored once.
local seq, msgs, state, reason = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local live, dead, deadver = KEYS[5], KEYS[6], KEYS[7]
local lease, fence, owner = KEYS[8], KEYS[9], KEYS[10]
local outcome, outcome_at = KEYS[11], KEYS[12]

-- Whether the fencing token `token` still holds the lease: a deliverer whose lease ended
-- (and maybe went to another process) must change nothing.
local function holds(token)
  return redis.call('GET', lease) == token
end

local function forget(id)
  redis.call('HDEL', msgs, id)
  redis.call('HDEL', state, id)
  redis.call('HDEL', reason, id)
end

local function enqueue(record)
  local id = redis.call('INCR', seq)
  redis.call('HSET', msgs, id, record)
  redis.call('HSET', state, id, 'queued')
  redis.call('ZADD', live, id, id)
  return id
end
