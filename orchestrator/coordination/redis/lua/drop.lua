-- drop(mode, h, g, cls, locks): 'release' gives back a grant (or leaves the queue), 'take'
-- keeps a grant made in the meantime (or leaves the queue). The client knows the class and
-- locks: a release checks only the grant id in the record. Results: {"k":"released"},
-- {"k":"held","f":fences,"t":granted_us}, {"k":"left"} or {"k":"none"}.
local function drop(mode, h, g, cls, locks)
  -- A release is the common call: its holder is looked up first.
  local raw = redis.call('HGET', P .. 'h', h)
  local pre = record_prefix(g)
  if raw and string.sub(raw, 1, #pre) == pre then
    if mode == 'take' then
      local rec = renew_holder(h, g)
      return '{"k":"held","f":' .. cjson.encode(rec.f) .. ',"t":"' .. NOWS .. '"}'
    end
    drop_holder(h, {c = cls, l = locks})
    return '{"k":"released"}'
  end
  raw = redis.call('HGET', P .. 'w', h)
  if raw and string.sub(raw, 1, #pre) == pre then
    drop_waiter(h)
    return '{"k":"left"}'
  end
  return '{"k":"none"}'
end
