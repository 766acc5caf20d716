-- Engine: queue jobs, fenced by the engine lease. Each payload goes on the waiting list
-- (LLEN = jobs waiting) and on its backend's wake list, which idle workers block on.
-- KEYS: engine_lease, jobs, events
-- ARGV: token, wake_prefix, events_maxlen, then (wake suffix, payload) pairs
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local all, by_backend, order = {}, {}, {}
for i = 4, #ARGV, 2 do
  local b, p = ARGV[i], ARGV[i + 1]
  all[#all + 1] = p
  if not by_backend[b] then by_backend[b] = {}; order[#order + 1] = b end
  local list = by_backend[b]
  list[#list + 1] = p
end
if #all == 0 then return 0 end
redis.call('LPUSH', KEYS[2], unpack(all))
for _, b in ipairs(order) do redis.call('LPUSH', ARGV[2] .. b, unpack(by_backend[b])) end
event(KEYS[3], ARGV[3], 'enqueued', cjson.encode({count = #all}))
return #all
