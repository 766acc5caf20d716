-- Worker: take the job whose payload it just popped from a wake list: remove it from the
-- waiting list and record the lease. 0 if the job is no longer waiting (cancelled).
-- KEYS: jobs, inflight, data, events
-- ARGV: worker, lease_ms, events_maxlen, payload, job_id, event_json
if redis.call('LREM', KEYS[1], 1, ARGV[4]) == 0 then return 0 end
local now = event(KEYS[4], ARGV[3], 'started', ARGV[6])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[5] .. '|' .. ARGV[1])
redis.call('HSET', KEYS[3], ARGV[5], ARGV[4])
return 1
