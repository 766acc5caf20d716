-- Engine: withdraw jobs: remove the waiting ones (and their tokens), flag the ones in flight
-- so their workers stop at the next heartbeat. Returns how many were waiting.
-- KEYS: jobs, inflight, cancelled, events
-- ARGV: wake_prefix, events_maxlen, [job ids]
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local removed = 0
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #items do
  local ok, job = pcall(cjson.decode, items[i])
  if ok and type(job) == 'table' and want[job.job_id] then
    redis.call('LREM', KEYS[1], 1, items[i])
    redis.call('RPOP', ARGV[1] .. tostring(job.backend))
    removed = removed + 1
    want[job.job_id] = nil
  end
end
for id, _ in pairs(want) do
  if redis.call('ZSCORE', KEYS[2], id) then
    redis.call('SADD', KEYS[3], id)
    redis.call('EXPIRE', KEYS[3], 86400)
  end
end
return removed
