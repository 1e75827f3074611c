-- The uncontended fast path of ops.lua: a call of one acquire or one release while nobody
-- waits runs here, without the prelude's helpers (defining them costs more than the rest of
-- such a call). Anything else, and every doubt (an entry of this holder, a lock held, a
-- class at its cap, a namespace not yet safe to grant in, a release that finds no holder),
-- takes the full path, which purges first. What this path skips is purging other needs'
-- expired entries: those block nothing it grants (a lock or a class slot held by an expired
-- holder sends its acquire to the full path, which purges them), and every full-path call,
-- renewal and snapshot purges them. Replies as ops.lua does; nil: take the full path.
local function fast()
  local P = ARGV[1]
  local kind = ARGV[5]
  if kind ~= 'acquire' and kind ~= 'release' then return nil end
  if redis.call('EXISTS', P .. 'qc') == 1 then return nil end
  if kind == 'release' then
    local h, g, cls, n = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
    if #ARGV ~= 9 + n then return nil end
    local raw = redis.call('HGET', P .. 'h', h)
    local pre = '{"g":"' .. g .. '"'
    if not raw or string.sub(raw, 1, #pre) ~= pre then return nil end
    -- As drop_holder in the prelude: the holder goes, its locks keep their last token.
    redis.call('ZREM', P .. 'x', 'h' .. h)
    redis.call('HDEL', P .. 'h', h)
    redis.call('ZREM', P .. 'c:' .. cls, h)
    for j = 1, n do
      local lock = ARGV[9 + j]
      local v = redis.call('HGET', P .. 'l', lock)
      local sp = v and string.find(v, ' ', 1, true)
      if sp and string.sub(v, sp + 1) == h then
        redis.call('HSET', P .. 'l', lock, string.sub(v, 1, sp - 1))
      end
    end
    return '["0",[{"k":"released"}],[]]'
  end
  local n, h, g, cls, cap = tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
  if #ARGV ~= 14 + n then return nil end
  local seen = redis.call('ZMSCORE', P .. 'x', 'h' .. h, 'w' .. h)
  if seen[1] or seen[2] then return nil end
  local safe = redis.call('GET', P .. 'safe')
  if not safe then return nil end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if now < tonumber(safe) then return nil end
  if cap >= 0 and redis.call('ZCARD', P .. 'c:' .. cls) >= cap then return nil end
  local values = {}
  for j = 1, n do
    local v = redis.call('HGET', P .. 'l', ARGV[14 + j])
    if v and string.find(v, ' ', 1, true) then return nil end
    values[j] = v
  end
  -- Granted: as acquire_begin and grant in the full path.
  if tonumber(redis.call('HGET', P .. 'caps', cls) or '-2') ~= cap then
    redis.call('HSET', P .. 'caps', cls, cap)
  end
  local nows = t[1] .. string.sub('00000' .. t[2], -6)
  local tokens = {}
  for j = 1, n do
    local token = tonumber(values[j] or '0') + 1
    if token < now then token = now end
    token = string.format('%.0f', token)
    redis.call('HSET', P .. 'l', ARGV[14 + j], token .. ' ' .. h)
    tokens[j] = '"' .. token .. '"'
  end
  local fences = '[' .. table.concat(tokens, ',') .. ']'
  local expiry = string.format('%.0f', now + tonumber(ARGV[3]))
  redis.call('ZADD', P .. 'c:' .. cls, expiry, h)
  redis.call('ZADD', P .. 'x', expiry, 'h' .. h)
  redis.call('HSET', P .. 'h', h, '{"g":"' .. g .. '","t":"' .. nows .. '","f":' .. fences
    .. ',' .. string.sub(ARGV[14], 2))
  return '["' .. nows .. '",[["granted",' .. fences .. ']],[]]'
end

local reply = fast()
if reply then return reply end
