-- Worker: report a job's result and release its lease (if it still holds it; a result from
-- a worker whose lease expired is still delivered: the engine applies each result once).
-- KEYS: inflight, data, results, events, cancelled
-- ARGV: worker, job_id, result_json, events_maxlen, event_json, was_cancelled, event_type
if redis.call('ZREM', KEYS[1], ARGV[2] .. '|' .. ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if ARGV[6] == '1' then redis.call('SREM', KEYS[5], ARGV[2]) end
redis.call('LPUSH', KEYS[3], ARGV[3])
event(KEYS[4], ARGV[4], ARGV[7], ARGV[5])
return 1
