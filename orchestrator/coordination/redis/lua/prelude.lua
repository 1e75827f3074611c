-- ARGV: prefix, calling process, lease (us), starve_after (us), then each script's own
-- arguments (plain strings: decoding JSON costs more than the rest of an uncontended call).
local P, PROC, LEASE, STARVE = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
-- The holders whose acquire is in this call: a grant for one is in the call's reply, so it
-- needs no note.
local SELF = {}
local MINE = {}
local CAP, USED = {}, {}
local SAFE = nil
local NOW, NOWS, LEASE_END = nil, nil, nil

-- Redis's time in us, read once per call and only when needed (a release that wakes no one
-- needs none); NOWS is the same as a string, put together from TIME's two parts (formatting
-- a number costs more than the rest of an uncontended call's arithmetic).
local function clock()
  if NOW == nil then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
    NOWS = t[1] .. string.sub('00000' .. t[2], -6)
  end
  return NOW
end

local function s(n) return string.format('%.0f', n) end

-- The expiry of a lease (or heartbeat) renewed now, as a string.
local function lease_end()
  if LEASE_END == nil then LEASE_END = s(clock() + LEASE) end
  return LEASE_END
end

-- Locks: one hash field each, "<last fencing token>" while free and "<token> <holder>"
-- while held, read at most once per call (LK caches it, false: no field).
local LK = {}
local function lock_get(lock)
  local v = LK[lock]
  if v == nil then
    v = redis.call('HGET', P .. 'l', lock) or false
    LK[lock] = v
  end
  return v
end

local function lock_set(lock, v)
  redis.call('HSET', P .. 'l', lock, v)
  LK[lock] = v
end

-- The holder owning a lock's value, or nil; and its last token (0: none yet).
local function owner_of(v)
  local sp = v and string.find(v, ' ', 1, true)
  if sp then return string.sub(v, sp + 1) end
  return nil
end

-- A lock's value once its holder is gone: its last token.
local function freed(v)
  local sp = string.find(v, ' ', 1, true)
  return sp and string.sub(v, 1, sp - 1) or v
end

local function token_of(v)
  if not v then return 0 end
  local sp = string.find(v, ' ', 1, true)
  return tonumber(sp and string.sub(v, 1, sp - 1) or v)
end

-- A holder record is JSON that starts with its grant id, so a release checks it without
-- decoding: {"g":"<grant id>","t":"<granted us>","f":[fences, one per lock],<fragment>
-- where the fragment, written by the client, holds c (class), l (locks), p (process) and
-- lab (labels). A waiter record is {"g":..,"pr":..,"e":..,"cr":..,<fragment>.
local function record_prefix(g) return '{"g":"' .. g .. '"' end

-- A holder record's fences, as the JSON array text it holds.
local function fences_of(raw) return string.match(raw, '"f":(%b[])') end

local function fragment_of(waiter_raw)
  local _, stop = string.find(waiter_raw, '"cr":"[^"]*",')
  return '{' .. string.sub(waiter_raw, stop + 1)
end

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
    local v = lock_get(lock)
    if owner_of(v) == h then lock_set(lock, freed(v)) end
  end
  if USED[rec.c] ~= nil then USED[rec.c] = USED[rec.c] - 1 end
  return rec
end

-- ``rec``: the waiter's record when the caller has it decoded already.
local function drop_waiter(h, rec)
  redis.call('ZREM', P .. 'x', 'w' .. h)
  if rec == nil then
    local raw = redis.call('HGET', P .. 'w', h)
    if not raw then return nil end
    rec = cjson.decode(raw)
  end
  redis.call('HDEL', P .. 'w', h)
  local q = P .. 'q:' .. rec.c
  redis.call('ZREM', q, h)
  if redis.call('ZCARD', q) == 0 then redis.call('SREM', P .. 'qc', rec.c) end
  return rec
end

-- Expired holders (lease not renewed) and dead waiters (no heartbeat) go first.
local function purge()
  clock()
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', '(' .. NOWS)) do
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
      SAFE = clock() - (tonumber(up) or 0) * 1000000 + LEASE
      redis.call('SET', P .. 'safe', s(SAFE))
    end
  end
  return clock() >= SAFE
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
    if reserved[lock] or owner_of(lock_get(lock)) then return false end
  end
  return true
end

local function before(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end

-- ``rec`` holds c, l, p, g of the need; ``frag`` is its record fragment (see above).
-- ``queued``: the waiter is in the queue (else it is granted on arrival, never queued).
-- Returns the fences as a JSON array text, one token per lock.
local function grant(h, rec, frag, queued)
  clock()
  free(rec.c)
  local tokens = {}
  for i, lock in ipairs(rec.l) do
    -- Never below the clock: after Redis loses this counter, tokens still increase.
    local token = token_of(lock_get(lock)) + 1
    if token < NOW then token = NOW end
    token = s(token)
    lock_set(lock, token .. ' ' .. h)
    tokens[i] = '"' .. token .. '"'
  end
  local fences = '[' .. table.concat(tokens, ',') .. ']'
  if queued then drop_waiter(h, rec) end
  local expiry = lease_end()
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  redis.call('ZADD', P .. 'x', expiry, 'h' .. h)
  if USED[rec.c] ~= nil then USED[rec.c] = USED[rec.c] + 1 end
  local at = NOWS
  redis.call('HSET', P .. 'h', h, record_prefix(rec.g) .. ',"t":"' .. at .. '","f":' .. fences
    .. ',' .. string.sub(frag, 2))
  if not SELF[h] then
    local note = '{"h":' .. cjson.encode(h) .. ',"g":"' .. rec.g .. '","f":' .. fences
      .. ',"t":"' .. at .. '"}'
    if rec.p == PROC then
      MINE[#MINE + 1] = note
    else
      local inbox = P .. 'in:' .. rec.p
      redis.call('RPUSH', inbox, note)
      redis.call('PEXPIRE', inbox, math.floor(LEASE / 1000) * 3 + 1000)
    end
  end
  return fences
end

-- The notes for this process's waiters, as a JSON array text.
local function mine() return '[' .. table.concat(MINE, ',') .. ']' end

local function dispatch()
  local classes = redis.call('SMEMBERS', P .. 'qc')
  if #classes == 0 then return end
  clock()
  if not grants_allowed() then return end
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
    local raw = redis.call('HGET', P .. 'w', item[1])
    local rec = cjson.decode(raw)
    if room(rec.c) >= 1 and locks_free(rec.l, rlocks) then
      grant(item[1], rec, fragment_of(raw), true)
    else
      for _, lock in ipairs(rec.l) do rlocks[lock] = true end
      rslots[rec.c] = (rslots[rec.c] or 0) + 1
    end
  end
  -- The queues of classes with room, merged in key order, read in chunks that grow from 4
  -- to 64 (most passes grant one waiter or none); a class that fills up stops contributing
  -- at once.
  local function refill(cur)
    cur.off = cur.off + cur.n - cur.granted
    local raw = redis.call('ZRANGE', P .. 'q:' .. cur.cls, cur.off, cur.off + cur.size - 1,
                           'WITHSCORES')
    cur.size = math.min(64, cur.size * 4)
    cur.items, cur.pos, cur.n, cur.granted = {}, 1, #raw / 2, 0
    for i = 1, #raw, 2 do cur.items[#cur.items + 1] = {raw[i], tonumber(raw[i + 1])} end
    if cur.n == 0 then cur.done = true end
  end
  local cursors = {}
  for _, cls in ipairs(classes) do
    if room(cls) >= 1 then
      local cur = {cls = cls, off = 0, n = 0, granted = 0, done = false, size = 4}
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
        grant(item[1], rec, fragment_of(raw), true)
        best.granted = best.granted + 1
      end
    end
    if room(best.cls) < 1 then best.done = true end
  end
end

local function renew_holder(h, g)
  local raw = redis.call('HGET', P .. 'h', h)
  if not raw then return nil end
  local pre = record_prefix(g)
  if string.sub(raw, 1, #pre) ~= pre then return nil end
  local rec = cjson.decode(raw)
  local expiry = lease_end()
  redis.call('ZADD', P .. 'x', expiry, 'h' .. h)
  redis.call('ZADD', P .. 'c:' .. rec.c, expiry, h)
  return rec
end
