-- Engine: withdraw jobs: remove the waiting ones (and their wake entries), flag the ones in
-- flight so their workers stop at the next heartbeat. Returns how many were waiting.
-- KEYS: jobs, inflight, cancelled, events
-- ARGV: wake_prefix, events_maxlen, [job ids]
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local removed = 0
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #items do
  local job = decode(items[i])
  if job and want[job.job_id] then
    redis.call('LREM', KEYS[1], 1, items[i])
    redis.call('LREM', ARGV[1] .. wake_suffix(job), 1, items[i])
    removed = removed + 1
    want[job.job_id] = nil
  end
end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 1, #members do
  local sep = string.find(members[i], '|', 1, true)
  local id = string.sub(members[i], 1, sep - 1)
  if want[id] then redis.call('SADD', KEYS[3], id) end
end
redis.call('EXPIRE', KEYS[3], 86400)
return removed
