"""Every Lua script the store runs, each one atomic step in Redis, with its contract above it.

A script is the unit of atomicity: what must never be seen half done (an item answered and counted,
a job's state moved, a label set or threshold fixed) happens inside one. ``ResultStore`` registers
them; nothing else sends Lua to Redis. The first line of each comment is its contract.
"""
from common.queue.keys import JOB_HEADER

# ITEM_FUNCTION: split packed lines into fields, or nil when any index is not an item of the job.
# ``items(text, pattern, total)`` splits a script's packed lines into their fields (by
# ``pattern``, index first), or returns nil when any index is not an item number in [0, total): digits
# only, no sign, no leading zero, so a forged or malformed chunk cannot grow a job's bitmaps, finish
# it, or store a record that no export reads.
ITEM_FUNCTION = """
local function items(text, pattern, total)
  local out = {}
  for line in string.gmatch(text, '[^\\n]+') do
    local fields = {string.match(line, pattern)}
    local index = fields[1]
    if not index or not (index == '0' or string.find(index, '^[1-9]%d*$')) or tonumber(index) >= total then
      return nil
    end
    out[#out + 1] = fields
  end
  return out
end
"""

# WRITE: store each item's first answer once, count it, and finish the job when all are answered.
# KEYS: meta, results, failures, answered, attempts. ARGV: now, then one line per item (see
# ``answers.entry_line``): "index TAB kind TAB correct TAB payload", lines joined by
# newlines; kind is the deciding tier ("1"/"2") or "f" for a failure, correct
# is "1"/"0" for an item with a gold label and "" otherwise. The payload is
# JSON, which never holds a raw tab or newline, so it is safe as the last field.
# An item is new when its answered bit was clear (SETBIT returns the old bit):
# the bit survives draining, the hashes do not. A job created with its bitmap
# (``bitmap`` in its meta) is answered by the bit alone; for an older job the
# hashes are still checked for a new bit, so it counts nothing twice. The counters
# are summed over the call and bumped once each: Redis's cost per item is one SETBIT and one HSET.
# A call naming any index that is not an item of the job (``ITEM_FUNCTION``) stores nothing at all.
# The write that finishes the job deletes its per-chunk attempt counts: every item is answered, so
# they cap nothing any more, and a drained job keeps only its bitmaps and record.
# Returns how many items were new, -1 when the job's records are gone, -2 for a foreign index.
WRITE = ITEM_FUNCTION + """
local meta, results, failures, bits = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', meta) == 0 then return -1 end
local lines = items(ARGV[2], '^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$', tonumber(redis.call('HGET', meta, 'total')))
if not lines then return -2 end
local added = 0
local counts = {failed = 0, done = 0, tier1 = 0, tier2 = 0, gold = 0, correct = 0}
local older = redis.call('HEXISTS', meta, 'bitmap') == 0
for _, line in ipairs(lines) do
  local index, kind, correct, payload = line[1], line[2], line[3], line[4]
  local new = redis.call('SETBIT', bits, index, 1) == 0
  if new and older then
    new = redis.call('HEXISTS', results, index) == 0 and redis.call('HEXISTS', failures, index) == 0
  end
  if new then
    added = added + 1
    if kind == 'f' then
      redis.call('HSET', failures, index, payload)
      counts.failed = counts.failed + 1
    else
      redis.call('HSET', results, index, payload)
      counts.done = counts.done + 1
      counts['tier' .. kind] = counts['tier' .. kind] + 1
      if correct ~= '' then
        counts.gold = counts.gold + 1
        counts.correct = counts.correct + tonumber(correct)
      end
    end
  end
end
for field, count in pairs(counts) do
  if count > 0 then redis.call('HINCRBY', meta, field, count) end
end
local state = redis.call('HGET', meta, 'state')
if added > 0 and (state == 'running' or state == 'submitting') then
  local answered = tonumber(redis.call('HGET', meta, 'done') or '0') + tonumber(redis.call('HGET', meta, 'failed') or '0')
  if answered >= tonumber(redis.call('HGET', meta, 'total')) then
    local failed = tonumber(redis.call('HGET', meta, 'failed') or '0')
    redis.call('HSET', meta, 'state', failed > 0 and 'failed' or 'done', 'finished', ARGV[1])
    redis.call('DEL', KEYS[5])
  end
end
return added
"""

# FRONTIER_FUNCTION: the first unanswered item at or after a start.
# The first item at or after ``start`` whose answered bit is clear (``total`` when none is below it):
# bit by bit up to a byte boundary, then BITPOS from that byte (its bit-granular form needs Redis 7).
# BITPOS answers 0 for a missing key and -1 past the string's end: both mean "clear from here".
FRONTIER_FUNCTION = """
local function frontier(bits, start, total)
  local i = start
  while i < total and i % 8 ~= 0 do
    if redis.call('GETBIT', bits, i) == 0 then return i end
    i = i + 1
  end
  if i >= total then return total end
  local pos = redis.call('BITPOS', bits, 0, i / 8)
  if pos < i then return i end
  return math.min(pos, total)
end
"""

# FRONTIER: the end of the run of answered items from a start.
# KEYS: meta, answered. ARGV: start. Returns the end of the answered run from start, -1 when gone.
FRONTIER = FRONTIER_FUNCTION + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return frontier(KEYS[2], tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'total')))
"""

# DRAIN: delete exported records below a stop, never past an unanswered item; move the watermark.
# KEYS: meta, results, failures, answered, audits. ARGV: stop. Deletes the stored records of items
# (results, failures, audit outcomes) from the job's ``drained`` watermark up to stop (never past the
# first unanswered item) and moves the mark; the audit counters stay in meta.
# Returns the new watermark, or -1 when the job's records are gone.
DRAIN = FRONTIER_FUNCTION + """
local meta, results, failures, bits, audits = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta) == 0 then return -1 end
local from = tonumber(redis.call('HGET', meta, 'drained') or '0')
local stop = math.min(tonumber(ARGV[1]), frontier(bits, from, tonumber(redis.call('HGET', meta, 'total'))))
if stop <= from then return from end
for i = from, stop - 1 do
  redis.call('HDEL', results, i)
  redis.call('HDEL', failures, i)
  redis.call('HDEL', audits, i)
end
redis.call('HSET', meta, 'drained', stop)
return stop
"""

# AUDIT: count each audited item once and keep its outcome beside (never instead of) its result.
# KEYS: meta, audits, audited. ARGV: one line per audited item, "index TAB agrees TAB payload" (agrees
# "1"/"0", payload JSON as in ``WRITE``). An item counts once, when its audited bit was clear (and,
# for a job from before that bitmap, it had no record), so a redelivered audit chunk counts nothing
# twice, drained or not; a drained item's outcome is counted but not kept. A call naming any index
# that is not an item of the job stores nothing. Returns how many outcomes were new, -1 when the
# job's records are gone, -2 for a foreign index.
AUDIT = ITEM_FUNCTION + """
local meta, audits, marks = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then return -1 end
local lines = items(ARGV[1], '^([^\\t]*)\\t([^\\t]*)\\t(.*)$', tonumber(redis.call('HGET', meta, 'total')))
if not lines then return -2 end
local drained = tonumber(redis.call('HGET', meta, 'drained') or '0')
local added, agreed = 0, 0
for _, line in ipairs(lines) do
  local index, agrees, payload = line[1], line[2], line[3]
  if redis.call('SETBIT', marks, index, 1) == 0 and redis.call('HEXISTS', audits, index) == 0 then
    added = added + 1
    agreed = agreed + tonumber(agrees)
    if tonumber(index) >= drained then redis.call('HSET', audits, index, payload) end
  end
end
if added > 0 then
  redis.call('HINCRBY', meta, 'audited', added)
  redis.call('HINCRBY', meta, 'audit_agreed', agreed)
end
return added
"""

# BEGIN: the job's state and this start's attempt number for a chunk, counted before it runs.
# KEYS: meta, attempts. ARGV: the chunk's field (TIER:NAME, see ``Chunk.name``).
# Returns {state, attempt}, with state '' when the job's records are gone
# (then nothing is written, so a vanished job is never half re-created).
BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'', 0} end
return {state, redis.call('HINCRBY', KEYS[2], ARGV[1], 1)}
"""

# CLAIM_LABELS: fix a job's label set once, by the first worker to take one of its chunks.
# KEYS: meta. ARGV: the worker's labels as JSON. A job submitted before any worker was up has no
# labels yet ("[]"): the first worker to take one of its chunks fixes them, in one step, so two
# workers starting at once cannot fix different sets. Returns the job's labels ('' when gone).
CLAIM_LABELS = """
local current = redis.call('HGET', KEYS[1], 'labels')
if not current then return '' end
if current == '[]' then
  redis.call('HSET', KEYS[1], 'labels', ARGV[1])
  return ARGV[1]
end
return current
"""

# FED: move a job's queued mark forward, never back, never on a purged job.
# KEYS: meta. ARGV: how many of the job's items a feeder has queued. Only moves forward (a resume
# re-sends earlier items) and never recreates the record of a job that was purged meanwhile.
FED = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'fed') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'fed', ARGV[1])
end
return 0
"""

# REFUND: take back one counted start of a chunk (Redis was away, not a crash).
# KEYS: attempts. ARGV: the chunk's field. Never below zero.
REFUND = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return 0
"""

# TRANSITION: move a job's state only from an allowed one.
# KEYS: meta. ARGV: new state, allowed current states...
# Returns 1 when the state changed, 0 when the current one forbids it, -1 when gone.
TRANSITION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
for n = 2, #ARGV do
  if state == ARGV[n] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return 1
  end
end
return 0
"""


# ADVERTISE: a worker's heartbeat: publish what it serves until a time on Redis's clock.
# KEYS: the tier's workers (hash: name -> info JSON). ARGV: worker, info JSON, seconds to live. A
# heartbeat: (re)publishes the worker with ``alive_until`` moved on, on Redis's clock (not the hosts').
ADVERTISE = """
local info = cjson.decode(ARGV[2])
info['alive_until'] = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(info))
return 0
"""

# LIVE_WORKERS: the workers whose heartbeat is current; drop the others.
# KEYS: as ADVERTISE. Drops every worker whose time passed (or that never had one: a worker of an
# older tango, or one whose entry is not JSON) and returns the others, as name, info pairs.
LIVE_WORKERS = """
local now = tonumber(redis.call('TIME')[1])
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for n = 1, #all, 2 do
  local ok, info = pcall(cjson.decode, all[n + 1])
  if ok and type(info) == 'table' and tonumber(info['alive_until'] or 0) > now then
    out[#out + 1] = all[n]
    out[#out + 1] = all[n + 1]
  else
    redis.call('HDEL', KEYS[1], all[n])
  end
end
return out
"""


# -- the broker's counts (``common.queue.transport``) --

# CLAIM: take a waiting message into a worker's hands and record it held, in one step (the transport's consume).
# KEYS: the queue, unacked, unacked_index, the claim counter, HELD, HELD_BY_QUEUE. ARGV: the raw
# message, the time now. Returns the message as delivered (with this claim's own delivery tag), or
# false when another consumer took it first. The tag is the publisher's with ``~N`` (N counts claims)
# put in place of any earlier claim's suffix; the message text is otherwise left exactly as it was.
CLAIM = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return false
end
local message = cjson.decode(ARGV[1])
local properties = message['properties']
local tag = properties['delivery_tag']
local fresh = (string.match(tag, '^(.*)~%d+$') or tag) .. '~' .. redis.call('INCR', KEYS[4])
local old = '"delivery_tag": ' .. cjson.encode(tag)
local at = string.find(ARGV[1], old, 1, true)
if not at then return redis.error_reply('no delivery tag in the message') end
local item = string.sub(ARGV[1], 1, at - 1) .. '"delivery_tag": ' .. cjson.encode(fresh) .. string.sub(ARGV[1], at + #old)
local info = properties['delivery_info']
redis.call('ZADD', KEYS[3], ARGV[2], fresh)
redis.call('HSET', KEYS[2], fresh,
           '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
local headers = message['headers']
local job = type(headers) == 'table' and headers['""" + JOB_HEADER + """'] or ''
redis.call('HSET', KEYS[5], fresh, KEYS[1] .. '\t' .. (type(job) == 'string' and job or ''))
redis.call('HINCRBY', KEYS[6], KEYS[1], 1)
return item
"""

# SETTLE: settle a held message's counts once, when it is acknowledged or goes back to its queue.
# KEYS: unacked, unacked_index, HELD, HELD_BY_QUEUE, IN_BROKER. ARGV: the delivery tag, "1" when the
# message leaves the broker (acknowledged, or rejected for good), "0" when it goes back to its queue.
# Removes the unacked record; only if there was one does it settle the held count and, for a message
# that leaves, its job's count. Returns 1 when it settled, 0 when the tag was not held (any more).
SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if not entry then return 1 end
redis.call('HDEL', KEYS[3], ARGV[1])
local queue, job = string.match(entry, '^(.-)\t(.*)$')
if redis.call('HINCRBY', KEYS[4], queue, -1) <= 0 then redis.call('HDEL', KEYS[4], queue) end
if ARGV[2] == '1' and job ~= '' and redis.call('HINCRBY', KEYS[5], job, -1) <= 0 then
  redis.call('HDEL', KEYS[5], job)
end
return 1
"""

# SETTLE_COUNTS: reset the broker's counts where an empty broker makes them known.
# KEYS: unacked, HELD, HELD_BY_QUEUE, IN_BROKER, then every queue. With nothing held, no message is in
# a worker's hands, so the held counts are reset; with every queue empty too, so are the jobs' counts.
# Returns 1 when the broker was empty.
SETTLE_COUNTS = """
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for n = 5, #KEYS do
  if redis.call('LLEN', KEYS[n]) > 0 then return 0 end
end
redis.call('DEL', KEYS[4])
return 1
"""
