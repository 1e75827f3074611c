"""The Lua scripts of the Redis coordination backend.

Every change of holders or waiters is one script, so each runs atomically inside Redis and
costs one round trip. Time is Redis's own (``TIME``, in microseconds), never a client clock.
Every script that touches holders or waiters first purges expired holders and waiters and
ends with a dispatch pass, the same algorithm as
:meth:`orchestrator.coordination.memory.InProcessCoordinator._dispatch`: starving waiters
first (granted, or what they need is reserved), then the waiters of classes with free slots
merged in aged-key order, each granted if its whole need is free.

Keys, under the prefix ``{namespace}:`` (one hash tag, so a cluster keeps them in one slot)::

    h         hash  holder -> JSON {c: class, l: locks, f: fences, t: granted_us, p, g, lab}
    hx        zset  holder -> lease expiry (us)
    c:<cls>   zset  holder -> lease expiry (us): the class's counting semaphore
    o         hash  lock -> holder owning it
    f         hash  lock -> last fencing token
    w         hash  waiter -> JSON {c, l, p: process, g: grant id, e: enqueued_us, cr, lab}
    wx        zset  waiter -> heartbeat expiry (us)
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

# ARGV[1] prefix, ARGV[2] calling process, ARGV[3] lease (us), ARGV[4] starve_after (us).
_PRELUDE = r"""
local P = ARGV[1]
local PROC = ARGV[2]
local LEASE = tonumber(ARGV[3])
local STARVE = tonumber(ARGV[4])
local SELF = nil
local MINE = {}
local CAP, USED = {}, {}
local SAFE = nil
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function s(n) return string.format('%.0f', n) end

local function drop_holder(h)
  redis.call('ZREM', P .. 'hx', h)
  local raw = redis.call('HGET', P .. 'h', h)
  if not raw then return nil end
  local rec = cjson.decode(raw)
  redis.call('HDEL', P .. 'h', h)
  redis.call('ZREM', P .. 'c:' .. rec.c, h)
  for _, lock in ipairs(rec.l) do
    if redis.call('HGET', P .. 'o', lock) == h then redis.call('HDEL', P .. 'o', lock) end
  end
  if USED[rec.c] ~= nil then USED[rec.c] = USED[rec.c] - 1 end
  return rec
end

local function drop_waiter(h)
  redis.call('ZREM', P .. 'wx', h)
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
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', P .. 'hx', '-inf', '(' .. s(NOW))) do
    drop_holder(h)
  end
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wx', '-inf', '(' .. s(NOW))) do
    drop_waiter(h)
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
      local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
      SAFE = NOW - up * 1000000 + LEASE
      redis.call('SET', P .. 'safe', s(SAFE))
    end
  end
  return NOW >= SAFE
end

local function free(cls)
  if CAP[cls] == nil then
    CAP[cls] = tonumber(redis.call('HGET', P .. 'caps', cls) or '-1')
    USED[cls] = redis.call('ZCARD', P .. 'c:' .. cls)
  end
  if CAP[cls] < 0 then return math.huge end
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

local function grant(h, rec)
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
  drop_waiter(h)
  local expiry = NOW + LEASE
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  redis.call('ZADD', P .. 'hx', expiry, h)
  redis.call('SADD', P .. 'gc', rec.c)
  USED[rec.c] = USED[rec.c] + 1
  redis.call('HSET', P .. 'h', h, cjson.encode(
    {c = rec.c, l = rec.l, f = fences, t = s(NOW), p = rec.p, g = rec.g, lab = rec.lab}))
  local note = {h = h, g = rec.g, f = fences, t = s(NOW)}
  if h == SELF then
    return
  elseif rec.p == PROC then
    MINE[#MINE + 1] = note
  else
    local inbox = P .. 'in:' .. rec.p
    redis.call('RPUSH', inbox, cjson.encode(note))
    redis.call('PEXPIRE', inbox, math.floor(LEASE / 1000) * 3 + 1000)
  end
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
      grant(item[1], rec)
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
        grant(item[1], rec)
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
  redis.call('ZADD', P .. 'hx', expiry, h)
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  return rec
end
"""

# ARGV[5..]: holder, grant id, class, cap (-1: none), locks JSON, priority, age credit (us),
# aging (us), labels JSON. Idempotent per grant id, so a retry after a lost reply is safe.
ACQUIRE = (
    _PRELUDE
    + r"""
local h, g, cls, cap = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
SELF = h
purge()
local raw = redis.call('HGET', P .. 'h', h)
if raw then
  -- Granted while the caller was not looking: renewed here, so its lease starts now.
  local rec = renew_holder(h, g)
  if not rec then return {'dup', s(NOW)} end
  return {'granted', s(NOW), cjson.encode(rec.f), cjson.encode(MINE)}
end
raw = redis.call('HGET', P .. 'w', h)
if raw then
  if cjson.decode(raw).g ~= g then return {'dup', s(NOW)} end
  redis.call('ZADD', P .. 'wx', NOW + LEASE, h)
else
  local key = NOW - tonumber(ARGV[11]) + tonumber(ARGV[10]) * tonumber(ARGV[12])
  redis.call('HSET', P .. 'w', h, cjson.encode({c = cls, l = cjson.decode(ARGV[9]), p = PROC,
    g = g, pr = ARGV[10], e = s(NOW), cr = ARGV[11], lab = cjson.decode(ARGV[13])}))
  redis.call('ZADD', P .. 'q:' .. cls, key, h)
  redis.call('SADD', P .. 'qc', cls)
  redis.call('ZADD', P .. 'wx', NOW + LEASE, h)
  redis.call('HSET', P .. 'caps', cls, ARGV[8])
end
dispatch()
raw = redis.call('HGET', P .. 'h', h)
if raw then
  return {'granted', s(NOW), cjson.encode(cjson.decode(raw).f), cjson.encode(MINE)}
end
-- Not granted: say what blocks it, and when the first blocking lease would run out.
local blockers, recheck = {}, nil
local function expiring(holder)
  local at = tonumber(redis.call('ZSCORE', P .. 'hx', holder))
  if at and (recheck == nil or at < recheck) then recheck = at end
end
if not grants_allowed() then
  blockers[#blockers + 1] = {r = 'coordinator', h = {}, why = 'Redis lost its state; grants '
    .. 'resume once every lease granted before that has run out'}
  recheck = SAFE
else
  if cap >= 0 then
    local holders = redis.call('ZRANGE', P .. 'c:' .. cls, 0, -1)
    if #holders >= cap then
      blockers[#blockers + 1] = {r = 'class:' .. cls, h = holders, why = 'at cap ' .. ARGV[8]}
      for _, holder in ipairs(holders) do expiring(holder) end
    end
  end
  for _, lock in ipairs(cjson.decode(ARGV[9])) do
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
return {'waiting', s(NOW), cjson.encode(blockers), wait, cjson.encode(MINE)}
"""
)

# ARGV[5] mode ('release': give back a grant; 'take': keep a grant made in the meantime),
# ARGV[6..] pairs of holder, grant id. Each leaves the queue or gives back its grant.
DROP = (
    _PRELUDE
    + r"""
local mode = ARGV[5]
purge()
local out = {}
for i = 6, #ARGV, 2 do
  local h, g = ARGV[i], ARGV[i + 1]
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
          drop_holder(h)
          res = {k = 'released'}
        end
      end
    end
  end
  out[#out + 1] = res
end
dispatch()
return {s(NOW), cjson.encode(out), cjson.encode(MINE)}
"""
)

# ARGV[5] number of holders, then pairs of holder, grant id for the holders to renew, then
# pairs for the waiters to heartbeat. Returns the holders whose lease was already gone and,
# per waiter, 'w' (still waiting), 'g' (granted meanwhile; renewed too) or 'x' (gone).
RENEW = (
    _PRELUDE
    + r"""
purge()
local lost = {}
local count = tonumber(ARGV[5])
local i = 6
for _ = 1, count do
  if not renew_holder(ARGV[i], ARGV[i + 1]) then lost[#lost + 1] = ARGV[i] end
  i = i + 2
end
local waiters = {}
while i <= #ARGV do
  local h, g = ARGV[i], ARGV[i + 1]
  i = i + 2
  local raw = redis.call('HGET', P .. 'w', h)
  if raw and cjson.decode(raw).g == g then
    redis.call('ZADD', P .. 'wx', NOW + LEASE, h)
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
return {s(NOW), cjson.encode(lost), cjson.encode(waiters), cjson.encode(MINE)}
"""
)

# A consistent view: holders, waiters in service order, class usage and fencing tokens.
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
