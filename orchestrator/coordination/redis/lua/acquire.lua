-- acquire_begin(h, g, cls, cap, pr, credit, aging, frag, locks): the first half of an
-- acquire (the caller purged first). Returns its result, or nil when the need waits in the
-- queue: then acquire_end tells, after the call's dispatch pass. Idempotent per grant id, so
-- a retry after a lost reply is safe. Results: ["granted", fences], ["waiting", blockers,
-- us until a blocking lease ends or -1] or ["dup"]; ``fences`` has one token per lock.
local function acquire_begin(h, g, cls, cap, pr, credit, aging, frag, locks)
  SELF[h] = true
  -- One look for an entry of this holder: its lease or heartbeat in 'x' (purged, so every
  -- entry there is alive).
  local seen = redis.call('ZMSCORE', P .. 'x', 'h' .. h, 'w' .. h)
  local raw = nil
  if seen[1] then
    -- An entry of this holder with another grant id is a duplicate if another process made
    -- it; if this process did, it is a leftover of a release that did not reach Redis (the
    -- caller no longer knows it), so it goes.
    raw = redis.call('HGET', P .. 'h', h)
    local rec = cjson.decode(raw)
    if rec.g == g then
      -- Granted while the caller was not looking: renewed here, so its lease starts now.
      renew_holder(h, g)
      return '["granted",' .. fences_of(raw) .. ']'
    end
    if rec.p ~= PROC then return '["dup"]' end
    drop_holder(h, rec)
  end
  raw = nil
  if seen[2] then
    raw = redis.call('HGET', P .. 'w', h)
    local rec = cjson.decode(raw)
    if rec.g ~= g then
      if rec.p ~= PROC then return '["dup"]' end
      drop_waiter(h, rec)
      raw = nil
    end
  end
  if raw then
    redis.call('ZADD', P .. 'x', lease_end(), 'w' .. h)
    return nil
  end
  -- The cap as asked for last (as in memory.py); written only when it changed.
  CAP[cls] = tonumber(redis.call('HGET', P .. 'caps', cls) or '-2')
  if CAP[cls] ~= cap then
    redis.call('HSET', P .. 'caps', cls, cap)
    CAP[cls] = cap
  end
  if redis.call('EXISTS', P .. 'qc') == 0 and grants_allowed() and free(cls) >= 1
      and locks_free(locks, {}) then
    -- Nobody waits, so the queue would hold this need alone: grant it without queueing.
    return '["granted",' .. grant(h, {c = cls, l = locks, p = PROC, g = g}, frag, false) .. ']'
  end
  local key = NOW - tonumber(credit) + tonumber(pr) * tonumber(aging)
  redis.call('HSET', P .. 'w', h, record_prefix(g) .. ',"pr":"' .. pr .. '","e":"'
    .. NOWS .. '","cr":"' .. credit .. '",' .. string.sub(frag, 2))
  redis.call('ZADD', P .. 'q:' .. cls, key, h)
  redis.call('SADD', P .. 'qc', cls)
  redis.call('ZADD', P .. 'x', lease_end(), 'w' .. h)
  return nil
end

-- The result of an acquire that acquire_begin left in the queue, after the dispatch pass:
-- granted, or what blocks it and when the first blocking lease would run out.
local function acquire_end(h, cls, cap, locks)
  local raw = redis.call('HGET', P .. 'h', h)
  if raw then return '["granted",' .. fences_of(raw) .. ']' end
  local blockers, recheck = {}, nil
  if not grants_allowed() then
    blockers[#blockers + 1] = {r = 'coordinator', h = {}, why = 'Redis (re)started less '
      .. 'than a lease ago and may have lost grants; grants resume once those could have '
      .. 'run out'}
    recheck = SAFE
  else
    if cap >= 0 then
      -- A holder's score here is its lease expiry, as in 'x'.
      local items = redis.call('ZRANGE', P .. 'c:' .. cls, 0, -1, 'WITHSCORES')
      if #items >= 2 * cap then
        local holders = {}
        for i = 1, #items, 2 do
          holders[#holders + 1] = items[i]
          local at = tonumber(items[i + 1])
          if recheck == nil or at < recheck then recheck = at end
        end
        blockers[#blockers + 1] = {r = 'class:' .. cls, h = holders, why = 'at cap ' .. s(cap)}
      end
    end
    for _, lock in ipairs(locks) do
      local owner = owner_of(lock_get(lock))
      if owner then
        blockers[#blockers + 1] = {r = lock, h = {owner}, why = 'locked'}
        local at = tonumber(redis.call('ZSCORE', P .. 'x', 'h' .. owner))
        if at and (recheck == nil or at < recheck) then recheck = at end
      end
    end
    if #blockers == 0 then
      blockers[#blockers + 1] = {r = 'queue', h = {},
                                 why = 'older or higher-priority waiters go first'}
    end
  end
  local wait = '-1'
  if recheck then wait = s(recheck - NOW) end
  return '["waiting",' .. cjson.encode(blockers) .. ',"' .. wait .. '"]'
end
