-- ARGV[5]: JSON [holder, grant id] pairs of the holders to renew, ARGV[6]: those of the
-- waiters to heartbeat. Replies [now, holders whose lease was already gone, per waiter its status:
-- 'w' (still waiting), 'g' (granted meanwhile; renewed too) or 'x' (gone), notes].
purge()
local lost = {}
for _, pair in ipairs(cjson.decode(ARGV[5])) do
  if not renew_holder(pair[1], pair[2]) then lost[#lost + 1] = pair[1] end
end
local waiters = {}
for _, pair in ipairs(cjson.decode(ARGV[6])) do
  local h, g = pair[1], pair[2]
  local raw = redis.call('HGET', P .. 'w', h)
  local pre = record_prefix(g)
  if raw and string.sub(raw, 1, #pre) == pre then
    redis.call('ZADD', P .. 'x', lease_end(), 'w' .. h)
    waiters[#waiters + 1] = {h = h, s = 'w'}
  else
    local rec = renew_holder(h, g)
    if rec then
      waiters[#waiters + 1] = {h = h, s = 'g', g = g, f = rec.f, t = NOWS}
    else
      waiters[#waiters + 1] = {h = h, s = 'x', g = g}
    end
  end
end
dispatch()
return '[' .. cjson.encode({NOWS, lost, waiters}):sub(2, -2) .. ',' .. mine() .. ']'
