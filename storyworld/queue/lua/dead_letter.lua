-- Worker: a job it holds cannot be run at all (malformed): move it to dead letters.
-- KEYS: inflight, payloads, holders, deliveries, dead, dead_new, events, stats
-- ARGV: job_id, worker, reason, payload, events_maxlen
local id = ARGV[1]
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
redis.call('LPUSH', KEYS[5], cjson.encode({job_id = id, reason = ARGV[3], payload = ARGV[4],
  at = now_ms() / 1000, worker = ARGV[2]}))
redis.call('HSET', KEYS[6], id, ARGV[3])
redis.call('HINCRBY', KEYS[8], 'dead', 1)
event(KEYS[7], ARGV[5], 'dead', cjson.encode({job_id = id, reason = ARGV[3], worker = ARGV[2]}))
return 1
