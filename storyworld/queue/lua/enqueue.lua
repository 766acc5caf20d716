-- Engine: push jobs (fenced by the engine lease) with one wake token each.
-- KEYS: engine_lease, jobs, events, stats
-- ARGV: token, wake_prefix, events_maxlen, then (job_id, backend, payload) triples
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = 0
for i = 4, #ARGV, 3 do
  redis.call('LPUSH', KEYS[2], ARGV[i + 2])
  redis.call('LPUSH', ARGV[2] .. ARGV[i + 1], ARGV[i])
  n = n + 1
end
if n > 0 then
  redis.call('HINCRBY', KEYS[4], 'enqueued', n)
  event(KEYS[3], ARGV[3], 'enqueued', cjson.encode({count = n}))
end
return n
