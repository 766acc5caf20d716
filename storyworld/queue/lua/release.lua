-- Worker: hand a job back (shutting down before it finished): release the lease and put it
-- at the front of its wake list. The delivery is not counted against the job.
-- KEYS: inflight, data, waiting, events, the job's wake list, jobs (the count list)
-- ARGV: job_id, worker, events_maxlen, requeued_kind, reason
if redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. ARGV[2]) == 0 then return 0 end
local now = event(KEYS[4], ARGV[3], ARGV[4], cjson.encode({job_id = ARGV[1],
  worker = ARGV[2], reason = ARGV[5]}))
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  wait_add(KEYS[3], KEYS[6], now, ARGV[1])
  redis.call('RPUSH', KEYS[5], ARGV[1])
end
return 1
