-- Worker: hand a job back (shutting down before it finished): release the lease and put it
-- at the front of the queue. The delivery is not counted against the job.
-- KEYS: inflight, data, jobs, events
-- ARGV: job_id, worker, wake_prefix, (unused), events_maxlen
if redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. ARGV[2]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if raw then
  redis.call('RPUSH', KEYS[3], raw)
  local job = decode(raw)
  if job then redis.call('RPUSH', ARGV[3] .. wake_suffix(job), raw) end
end
event(KEYS[4], ARGV[5], 'requeued', cjson.encode({job_id = ARGV[1], worker = ARGV[2],
  reason = 'handed back by a worker shutting down'}))
return 1
