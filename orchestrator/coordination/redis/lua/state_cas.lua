-- ARGV: prefix, key, expected version, writer nonce, value JSON. Returns the new version or
-- -1. The nonce makes a retry after a lost reply see its own write instead of a conflict.
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
