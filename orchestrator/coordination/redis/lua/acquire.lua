-- A[5..]: holder, grant id, class, cap (-1: none), locks, priority, age credit (us), aging
-- (us), labels. Idempotent per grant id, so a retry after a lost reply is safe. Replies
-- (one JSON array, like every script but snapshot.lua): ["granted", now, fences, notes],
-- ["waiting", now, blockers, us until a blocking lease ends or -1, notes] or ["dup", now].
-- ``notes`` are grants made for other waiters of the calling process.
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
