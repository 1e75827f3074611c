-- A consistent view: holders, waiters in service order, class usage and fencing tokens, as
-- [now, holders (flat), waiters (flat, in service order), usage (flat), fences (flat), notes].
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
-- Every class that ever had a holder had its cap written first (acquire.lua).
local usage = {}
for _, cls in ipairs(redis.call('HKEYS', P .. 'caps')) do
  usage[#usage + 1] = cls
  usage[#usage + 1] = redis.call('ZCARD', P .. 'c:' .. cls)
end
return {NOWS, redis.call('HGETALL', P .. 'h'), waiters, usage, redis.call('HGETALL', P .. 'l'),
        mine()}
