-- Worker: a job it claimed can never run (unreadable, over a limit): dead-letter it with the
-- reason, keeping at most `payload_limit` bytes of the payload in the letter.
-- KEYS: inflight, data, waiting, dead, dead_new, events, stats, jobs (the count list)
-- ARGV: job_id, reason, worker, events_maxlen, dead_kind, payload_limit, payload (used if
--       none is stored)
redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. ARGV[3])
wait_remove(KEYS[3], KEYS[8], ARGV[1])
local raw = redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[7]
redis.call('HDEL', KEYS[2], ARGV[1])
local now = event(KEYS[6], ARGV[4], ARGV[5], cjson.encode({job_id = ARGV[1],
  reason = ARGV[2], worker = ARGV[3]}))
local letter = cjson.encode({job_id = ARGV[1], reason = ARGV[2],
  payload = string.sub(raw, 1, tonumber(ARGV[6])), size = #raw, at = now / 1000,
  worker = ARGV[3]})
-- Filed under its job id; a message without one under `entry:<SHA-1 of the letter>`.
local ref = ARGV[1] ~= '' and ARGV[1] or ('entry:' .. string.sub(redis.sha1hex(letter), 1, 16))
redis.call('HSET', KEYS[4], ref, letter)
if ARGV[1] ~= '' then redis.call('HSET', KEYS[5], ARGV[1], ARGV[2]) end
redis.call('HINCRBY', KEYS[7], 'dead', 1)
return 1
