-- A[5] mode ('release': give back a grant; 'take': keep a grant made in the meantime),
-- A[6] [holder, grant id] pairs. Each leaves the queue or gives back its grant. Replies
-- [now, results, notes].
local mode = A[5]
purge()
local out = {}
for _, pair in ipairs(A[6]) do
  local h, g = pair[1], pair[2]
  local res = {k = 'none'}
  -- A release is the common call: its holder is looked up first.
  local raw = redis.call('HGET', P .. 'h', h)
  local rec = raw and cjson.decode(raw)
  if rec and rec.g == g then
    if mode == 'take' then
      renew_holder(h, g)
      res = {k = 'held', f = rec.f, t = s(NOW)}
    else
      drop_holder(h, rec)
      res = {k = 'released'}
    end
  else
    raw = redis.call('HGET', P .. 'w', h)
    if raw and cjson.decode(raw).g == g then
      drop_waiter(h)
      res = {k = 'left'}
    end
  end
  out[#out + 1] = res
end
dispatch()
return cjson.encode({s(NOW), out, MINE})
