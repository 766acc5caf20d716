-- Worker: a message it took cannot be run at all (malformed): dead-letter it with the reason.
-- KEYS: jobs, dead, dead_new, events
-- ARGV: payload, job_id, reason, worker, events_maxlen
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('LPUSH', KEYS[2], cjson.encode({job_id = ARGV[2], reason = ARGV[3],
  payload = ARGV[1], at = now_ms() / 1000, worker = ARGV[4]}))
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) end
event(KEYS[4], ARGV[5], 'dead', cjson.encode({job_id = ARGV[2], reason = ARGV[3],
  worker = ARGV[4]}))
return 1
