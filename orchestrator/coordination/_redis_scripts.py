"""The Lua scripts of the Redis coordination backend.

Every change of holders or waiters is one script, so each runs atomically inside Redis and
costs one round trip. Time is Redis's own (``TIME``, in microseconds), never a client clock.
Every script that touches holders or waiters first purges expired holders and waiters and
ends with a dispatch pass, the same algorithm as
:meth:`orchestrator.coordination.memory.InProcessCoordinator._dispatch`: starving waiters
first (granted, or what they need is reserved), then the waiters of classes with free slots
merged in aged-key order, each granted if its whole need is free.

Keys, under the prefix ``{namespace}:`` (a hash tag: one cluster slot per namespace)::

    h         hash  holder -> JSON {c: class, l: locks, f: fences, t: granted_us, p, g, lab}
    x         zset  "h" + holder -> lease expiry, "w" + waiter -> heartbeat expiry (us)
    c:<cls>   zset  holder -> lease expiry (us): the class's counting semaphore
    o         hash  lock -> holder owning it
    f         hash  lock -> last fencing token
    w         hash  waiter -> JSON {c, l, p: process, g: grant id, e: enqueued_us, cr, lab}
    q:<cls>   zset  waiter -> aged key (us): the class's queue
    qc        set   classes with waiters
    gc        set   classes that ever had a holder (for snapshot usage counts)
    caps      hash  class -> cap (-1: unlimited), as last asked for
    safe      str   time (us) from which grants may be made (see ``grants_allowed``)
    in:<proc> list  grant notes for a process's waiters (its wake-up hint)
    s         hash  shared state: key -> "<version>:<writer nonce>:<JSON>"

Numbers pass to Redis as strings formatted with ``%.0f``: Lua's ``tostring`` and cjson keep
only 14 digits, too few for microsecond timestamps and fencing tokens.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "DROP", "RENEW", "SNAPSHOT", "STATE_CAS"]

# ARGV[1] is one JSON array (cheaper for the client to send than many arguments): prefix,
# calling process, lease (us), starve_after (us), then each script's own arguments.
_PRELUDE = r"""
local A = cjson.decode(ARGV[1])
local P, PROC, LEASE, STARVE = A[1], A[2], A[3], A[4]
local SELF = nil
local MINE = {}
local CAP, USED = {}, {}
local SAFE = nil
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function s(n) return string.format('%.0f', n) end

local function drop_holder(h, rec)
  redis.call('ZREM', P .. 'x', 'h' .. h)
  if rec == nil then
    local raw = redis.call('HGET', P .. 'h', h)
    if not raw then return nil end
    rec = cjson.decode(raw)
  end
  redis.call('HDEL', P .. 'h', h)
  redis.call('ZREM', P .. 'c:' .. rec.c, h)
  for _, lock in ipairs(rec.l) do
    if redis.call('HGET', P .. 'o', lock) == h then redis.call('HDEL', P .. 'o', lock) end
  end
  if USED[rec.c] ~= nil then USED[rec.c] = USED[rec.c] - 1 end
  return rec
end

local function drop_waiter(h)
  redis.call('ZREM', P .. 'x', 'w' .. h)
  local raw = redis.call('HGET', P .. 'w', h)
  if not raw then return nil end
  local rec = cjson.decode(raw)
  redis.call('HDEL', P .. 'w', h)
  local q = P .. 'q:' .. rec.c
  redis.call('ZREM', q, h)
  if redis.call('ZCARD', q) == 0 then redis.call('SREM', P .. 'qc', rec.c) end
  return rec
end

-- Expired holders (lease not renewed) and dead waiters (no heartbeat) go first.
local function purge()
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', '(' .. s(NOW))) do
    if string.sub(m, 1, 1) == 'h' then
      drop_holder(string.sub(m, 2), nil)
    else
      drop_waiter(string.sub(m, 2))
    end
  end
end

-- When this namespace's keys are missing, Redis may have restarted and lost grants whose
-- holders still run. Their leases end at most one lease after the restart, and the server
-- started no earlier than now - uptime, so granting from start + lease on never overlaps.
local function grants_allowed()
  if SAFE == nil then
    local v = redis.call('GET', P .. 'safe')
    if v then
      SAFE = tonumber(v)
    else
      -- An INFO that cannot be read (renamed, or denied) counts as a server just started.
      local info = redis.pcall('INFO', 'server')
      local up = type(info) == 'string' and string.match(info, 'uptime_in_seconds:(%d+)')
      SAFE = NOW - (tonumber(up) or 0) * 1000000 + LEASE
      redis.call('SET', P .. 'safe', s(SAFE))
    end
  end
  return NOW >= SAFE
end

local function free(cls)
  if CAP[cls] == nil then
    CAP[cls] = tonumber(redis.call('HGET', P .. 'caps', cls) or '-1')
  end
  if CAP[cls] < 0 then return math.huge end  -- unlimited: no need to count
  if USED[cls] == nil then USED[cls] = redis.call('ZCARD', P .. 'c:' .. cls) end
  return CAP[cls] - USED[cls]
end

local function locks_free(locks, reserved)
  for _, lock in ipairs(locks) do
    if reserved[lock] or redis.call('HEXISTS', P .. 'o', lock) == 1 then return false end
  end
  return true
end

local function before(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end

-- ``queued``: the waiter is in the queue (else it is granted on arrival, never queued).
local function grant(h, rec, queued)
  free(rec.c)
  local fences = {}
  for _, lock in ipairs(rec.l) do
    -- Never below the clock: after Redis loses this counter, tokens still increase.
    local token = tonumber(redis.call('HGET', P .. 'f', lock) or '0') + 1
    if token < NOW then token = NOW end
    redis.call('HSET', P .. 'f', lock, s(token))
    redis.call('HSET', P .. 'o', lock, h)
    fences[lock] = s(token)
  end
  if queued then drop_waiter(h) end
  local expiry = NOW + LEASE
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  redis.call('ZADD', P .. 'x', expiry, 'h' .. h)
  redis.call('SADD', P .. 'gc', rec.c)
  if USED[rec.c] ~= nil then USED[rec.c] = USED[rec.c] + 1 end
  redis.call('HSET', P .. 'h', h, cjson.encode(
    {c = rec.c, l = rec.l, f = fences, t = s(NOW), p = rec.p, g = rec.g, lab = rec.lab}))
  local note = {h = h, g = rec.g, f = fences, t = s(NOW)}
  if h == SELF then
    return fences
  elseif rec.p == PROC then
    MINE[#MINE + 1] = note
  else
    local inbox = P .. 'in:' .. rec.p
    redis.call('RPUSH', inbox, cjson.encode(note))
    redis.call('PEXPIRE', inbox, math.floor(LEASE / 1000) * 3 + 1000)
  end
  return fences
end

local function dispatch()
  local classes = redis.call('SMEMBERS', P .. 'qc')
  if #classes == 0 or not grants_allowed() then return end
  local rlocks, rslots = {}, {}
  local function room(cls) return free(cls) - (rslots[cls] or 0) end
  -- Starving waiters: served if they can be, else what they need is reserved.
  local starving = {}
  for _, cls in ipairs(classes) do
    local items = redis.call('ZRANGEBYSCORE', P .. 'q:' .. cls, '-inf', s(NOW - STARVE),
                             'WITHSCORES')
    for i = 1, #items, 2 do starving[#starving + 1] = {items[i], tonumber(items[i + 1])} end
  end
  table.sort(starving, before)
  for _, item in ipairs(starving) do
    local rec = cjson.decode(redis.call('HGET', P .. 'w', item[1]))
    if room(rec.c) >= 1 and locks_free(rec.l, rlocks) then
      grant(item[1], rec, true)
    else
      for _, lock in ipairs(rec.l) do rlocks[lock] = true end
      rslots[rec.c] = (rslots[rec.c] or 0) + 1
    end
  end
  -- The queues of classes with room, merged in key order, read in chunks; a class that
  -- fills up stops contributing at once.
  local function refill(cur)
    cur.off = cur.off + cur.n - cur.granted
    local raw = redis.call('ZRANGE', P .. 'q:' .. cur.cls, cur.off, cur.off + 63, 'WITHSCORES')
    cur.items, cur.pos, cur.n, cur.granted = {}, 1, #raw / 2, 0
    for i = 1, #raw, 2 do cur.items[#cur.items + 1] = {raw[i], tonumber(raw[i + 1])} end
    if cur.n == 0 then cur.done = true end
  end
  local cursors = {}
  for _, cls in ipairs(classes) do
    if room(cls) >= 1 then
      local cur = {cls = cls, off = 0, n = 0, granted = 0, done = false}
      refill(cur)
      cursors[#cursors + 1] = cur
    end
  end
  while true do
    local best = nil
    for _, cur in ipairs(cursors) do
      if not cur.done and cur.pos > #cur.items then refill(cur) end
      if not cur.done and (best == nil or before(cur.items[cur.pos], best.items[best.pos])) then
        best = cur
      end
    end
    if best == nil then break end
    local item = best.items[best.pos]
    best.pos = best.pos + 1
    local raw = redis.call('HGET', P .. 'w', item[1])
    if raw then
      local rec = cjson.decode(raw)
      if room(best.cls) >= 1 and locks_free(rec.l, rlocks) then
        grant(item[1], rec, true)
        best.granted = best.granted + 1
      end
    end
    if room(best.cls) < 1 then best.done = true end
  end
end

local function renew_holder(h, g)
  local raw = redis.call('HGET', P .. 'h', h)
  if not raw then return nil end
  local rec = cjson.decode(raw)
  if rec.g ~= g then return nil end
  local expiry = NOW + LEASE
  redis.call('ZADD', P .. 'x', expiry, 'h' .. h)
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  return rec
end
"""

# A[5..]: holder, grant id, class, cap (-1: none), locks, priority, age credit (us), aging
# (us), labels. Idempotent per grant id, so a retry after a lost reply is safe. Replies
# (one JSON array, like every script below but SNAPSHOT): ["granted", now, fences, notes],
# ["waiting", now, blockers, us until a blocking lease ends or -1, notes] or ["dup", now].
# ``notes`` are grants made for other waiters of the calling process.
ACQUIRE = (
    _PRELUDE
    + r"""
local h, g, cls, cap, locks, labels = A[5], A[6], A[7], A[8], A[9], A[13]
SELF = h
purge()
-- An entry of this holder with another grant id is a duplicate if another process made it;
-- if this process did, it is a leftover of a release that did not reach Redis (the caller
-- no longer knows it), so it goes.
local raw = redis.call('HGET', P .. 'h', h)
if raw then
  local rec = cjson.decode(raw)
  if rec.g == g then
    -- Granted while the caller was not looking: renewed here, so its lease starts now.
    renew_holder(h, g)
    return cjson.encode({'granted', s(NOW), rec.f, MINE})
  end
  if rec.p ~= PROC then return cjson.encode({'dup', s(NOW)}) end
  drop_holder(h, rec)
end
raw = redis.call('HGET', P .. 'w', h)
if raw and cjson.decode(raw).g ~= g then
  if cjson.decode(raw).p ~= PROC then return cjson.encode({'dup', s(NOW)}) end
  drop_waiter(h)
  raw = nil
end
if raw then
  redis.call('ZADD', P .. 'x', NOW + LEASE, 'w' .. h)
else
  -- The cap as asked for last (as in memory.py); written only when it changed.
  CAP[cls] = tonumber(redis.call('HGET', P .. 'caps', cls) or '-2')
  if CAP[cls] ~= cap then
    redis.call('HSET', P .. 'caps', cls, cap)
    CAP[cls] = cap
  end
  if redis.call('EXISTS', P .. 'qc') == 0 and grants_allowed() and free(cls) >= 1
      and locks_free(locks, {}) then
    -- Nobody waits, so the queue would hold this need alone: grant it without queueing.
    local rec = {c = cls, l = locks, p = PROC, g = g, lab = labels}
    return cjson.encode({'granted', s(NOW), grant(h, rec, false), MINE})
  end
  local key = NOW - A[11] + A[10] * A[12]
  redis.call('HSET', P .. 'w', h, cjson.encode({c = cls, l = locks, p = PROC, g = g,
    pr = s(A[10]), e = s(NOW), cr = s(A[11]), lab = labels}))
  redis.call('ZADD', P .. 'q:' .. cls, key, h)
  redis.call('SADD', P .. 'qc', cls)
  redis.call('ZADD', P .. 'x', NOW + LEASE, 'w' .. h)
end
dispatch()
raw = redis.call('HGET', P .. 'h', h)
if raw then
  return cjson.encode({'granted', s(NOW), cjson.decode(raw).f, MINE})
end
-- Not granted: say what blocks it, and when the first blocking lease would run out.
local blockers, recheck = {}, nil
local function expiring(holder)
  local at = tonumber(redis.call('ZSCORE', P .. 'x', 'h' .. holder))
  if at and (recheck == nil or at < recheck) then recheck = at end
end
if not grants_allowed() then
  blockers[#blockers + 1] = {r = 'coordinator', h = {}, why = 'Redis (re)started less than '
    .. 'a lease ago and may have lost grants; grants resume once those could have run out'}
  recheck = SAFE
else
  if cap >= 0 then
    local holders = redis.call('ZRANGE', P .. 'c:' .. cls, 0, -1)
    if #holders >= cap then
      blockers[#blockers + 1] = {r = 'class:' .. cls, h = holders, why = 'at cap ' .. s(cap)}
      for _, holder in ipairs(holders) do expiring(holder) end
    end
  end
  for _, lock in ipairs(locks) do
    local owner = redis.call('HGET', P .. 'o', lock)
    if owner then
      blockers[#blockers + 1] = {r = lock, h = {owner}, why = 'locked'}
      expiring(owner)
    end
  end
  if #blockers == 0 then
    blockers[#blockers + 1] = {r = 'queue', h = {},
                               why = 'older or higher-priority waiters go first'}
  end
end
local wait = '-1'
if recheck then wait = s(recheck - NOW) end
return cjson.encode({'waiting', s(NOW), blockers, wait, MINE})
"""
)

# A[5] mode ('release': give back a grant; 'take': keep a grant made in the meantime),
# A[6] [holder, grant id] pairs. Each leaves the queue or gives back its grant. Replies
# [now, results, notes].
DROP = (
    _PRELUDE
    + r"""
local mode = A[5]
purge()
local out = {}
for _, pair in ipairs(A[6]) do
  local h, g = pair[1], pair[2]
  local res = {k = 'none'}
  local raw = redis.call('HGET', P .. 'w', h)
  if raw and cjson.decode(raw).g == g then
    drop_waiter(h)
    res = {k = 'left'}
  else
    raw = redis.call('HGET', P .. 'h', h)
    if raw then
      local rec = cjson.decode(raw)
      if rec.g == g then
        if mode == 'take' then
          renew_holder(h, g)
          res = {k = 'held', f = rec.f, t = s(NOW)}
        else
          drop_holder(h, rec)
          res = {k = 'released'}
        end
      end
    end
  end
  out[#out + 1] = res
end
dispatch()
return cjson.encode({s(NOW), out, MINE})
"""
)

# A[5] [holder, grant id] pairs of the holders to renew, A[6] those of the waiters to
# heartbeat. Replies [now, holders whose lease was already gone, per waiter its status:
# 'w' (still waiting), 'g' (granted meanwhile; renewed too) or 'x' (gone), notes].
RENEW = (
    _PRELUDE
    + r"""
purge()
local lost = {}
for _, pair in ipairs(A[5]) do
  if not renew_holder(pair[1], pair[2]) then lost[#lost + 1] = pair[1] end
end
local waiters = {}
for _, pair in ipairs(A[6]) do
  local h, g = pair[1], pair[2]
  local raw = redis.call('HGET', P .. 'w', h)
  if raw and cjson.decode(raw).g == g then
    redis.call('ZADD', P .. 'x', NOW + LEASE, 'w' .. h)
    waiters[#waiters + 1] = {h = h, s = 'w'}
  else
    local rec = renew_holder(h, g)
    if rec then
      waiters[#waiters + 1] = {h = h, s = 'g', g = g, f = rec.f, t = s(NOW)}
    else
      waiters[#waiters + 1] = {h = h, s = 'x', g = g}
    end
  end
end
dispatch()
return cjson.encode({s(NOW), lost, waiters, MINE})
"""
)

# A consistent view: holders, waiters in service order, class usage and fencing tokens, as
# [now, holders (flat), waiters (flat, in service order), usage (flat), fences (flat), notes].
SNAPSHOT = (
    _PRELUDE
    + r"""
purge()
dispatch()
local queued = {}
for _, cls in ipairs(redis.call('SMEMBERS', P .. 'qc')) do
  local items = redis.call('ZRANGE', P .. 'q:' .. cls, 0, -1, 'WITHSCORES')
  for i = 1, #items, 2 do queued[#queued + 1] = {items[i], tonumber(items[i + 1])} end
end
table.sort(queued, before)
local waiters = {}
for _, item in ipairs(queued) do
  waiters[#waiters + 1] = item[1]
  waiters[#waiters + 1] = redis.call('HGET', P .. 'w', item[1])
end
local usage = {}
for _, cls in ipairs(redis.call('SMEMBERS', P .. 'gc')) do
  usage[#usage + 1] = cls
  usage[#usage + 1] = redis.call('ZCARD', P .. 'c:' .. cls)
end
return {s(NOW), redis.call('HGETALL', P .. 'h'), waiters, usage, redis.call('HGETALL', P .. 'f'),
        cjson.encode(MINE)}
"""
)

# ARGV: prefix, key, expected version, writer nonce, value JSON. Returns the new version or
# -1. The nonce makes a retry after a lost reply see its own write instead of a conflict.
STATE_CAS = r"""
local field = ARGV[2]
local expected = tonumber(ARGV[3])
local cur = redis.call('HGET', ARGV[1] .. 's', field)
local version, nonce = 0, ''
if cur then
  local a = string.find(cur, ':', 1, true)
  local b = string.find(cur, ':', a + 1, true)
  version = tonumber(string.sub(cur, 1, a - 1))
  nonce = string.sub(cur, a + 1, b - 1)
end
if version == expected then
  redis.call('HSET', ARGV[1] .. 's', field, (version + 1) .. ':' .. ARGV[4] .. ':' .. ARGV[5])
  return version + 1
end
if version == expected + 1 and nonce == ARGV[4] then return version end
return -1
"""
