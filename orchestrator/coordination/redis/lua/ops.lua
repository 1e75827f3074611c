-- ARGV[5..]: operations, run in order as separate calls would run, each a kind and its
-- arguments:
--   'acquire', lock count n, holder, grant id, class, cap (-1: none), priority, age credit
--       (us), aging (us), record fragment (JSON: c, l, p, lab; see the prelude), n locks
--   'release' or 'take', holder, grant id, class, lock count n, n locks
-- All of a call's operations share one purge and one dispatch pass (a release wakes the
-- queue only when someone waits), so a batch of them costs about what one costs. Replies
-- [now, results (one per operation, see acquire.lua and drop.lua), notes]; ``now`` is "0"
-- when the call read no clock; ``notes`` are grants made for other waiters of the calling
-- process.
local results, pending = {}, {}
local purged, dropped = false, false
local i = 5
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'acquire' then
    local n = tonumber(ARGV[i + 1])
    local h, cls, cap = ARGV[i + 2], ARGV[i + 4], tonumber(ARGV[i + 5])
    local locks = {}
    for j = 1, n do locks[j] = ARGV[i + 9 + j] end
    if not purged then
      purge()
      purged = true
    end
    local res = acquire_begin(h, ARGV[i + 3], cls, cap, ARGV[i + 6], ARGV[i + 7], ARGV[i + 8],
                              ARGV[i + 9], locks)
    results[#results + 1] = res or false
    if res == nil then pending[#pending + 1] = {#results, h, cls, cap, locks} end
    i = i + 10 + n
  else
    local n = tonumber(ARGV[i + 4])
    local locks = {}
    for j = 1, n do locks[j] = ARGV[i + 4 + j] end
    results[#results + 1] = drop(kind, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], locks)
    dropped = true
    i = i + 5 + n
  end
end
-- Expired entries go, and freed slots and locks pass on, only when someone waits.
if #pending > 0 or (dropped and redis.call('EXISTS', P .. 'qc') == 1) then
  if not purged then purge() end
  dispatch()
end
for _, p in ipairs(pending) do results[p[1]] = acquire_end(p[2], p[3], p[4], p[5]) end
return '["' .. (NOWS or '0') .. '",[' .. table.concat(results, ',') .. '],' .. mine() .. ']'
