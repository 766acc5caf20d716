-- Worker: hand a job back (shutdown before it finished): release the lease and put the job
-- at the front of the queue with a wake token. The delivery is not counted against it.
-- KEYS: inflight, payloads, holders, deliveries, jobs, events
-- ARGV: job_id, worker, wake_prefix, backend, events_maxlen
local id = ARGV[1]
if redis.call('HGET', KEYS[3], id) ~= ARGV[2] then return 0 end
local raw = redis.call('HGET', KEYS[2], id)
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HINCRBY', KEYS[4], id, -1)
if raw then
  redis.call('RPUSH', KEYS[5], raw)
  redis.call('LPUSH', ARGV[3] .. ARGV[4], id)
end
event(KEYS[6], ARGV[5], 'requeued', cjson.encode({job_id = id, worker = ARGV[2],
  reason = 'handed back by a worker shutting down'}))
return 1
