-- ARGV[5] mode: 'release' gives back a grant (or leaves the queue), 'take' keeps a grant
-- made in the meantime (or leaves the queue); ARGV[6..]: for each holder, its name, grant
-- id, class, lock count and locks (the client knows them: a release checks only the grant
-- id in the record). Replies [now, results, notes]; ``now`` is "0" when the call woke no
-- one (it read no clock).
local mode = ARGV[5]
local out = {}
local i = 6
while i <= #ARGV do
  local h, g, cls, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local locks = {}
  for j = 1, n do locks[j] = ARGV[i + 3 + j] end
  i = i + 4 + n
  local res = '{"k":"none"}'
  -- A release is the common call: its holder is looked up first.
  local raw = redis.call('HGET', P .. 'h', h)
  local pre = record_prefix(g)
  if raw and string.sub(raw, 1, #pre) == pre then
    if mode == 'take' then
      local rec = renew_holder(h, g)
      res = '{"k":"held","f":' .. cjson.encode(rec.f) .. ',"t":"' .. NOWS .. '"}'
    else
      drop_holder(h, {c = cls, l = locks})
      res = '{"k":"released"}'
    end
  else
    raw = redis.call('HGET', P .. 'w', h)
    if raw and string.sub(raw, 1, #pre) == pre then
      drop_waiter(h)
      res = '{"k":"left"}'
    end
  end
  out[#out + 1] = res
end
-- Expired entries go, and freed slots and locks pass on, only when someone waits.
if redis.call('EXISTS', P .. 'qc') == 1 then
  purge()
  dispatch()
end
return '["' .. (NOWS or '0') .. '",[' .. table.concat(out, ',') .. '],' .. mine() .. ']'
