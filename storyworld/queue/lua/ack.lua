-- Worker: report a job's result and release its lease (if it still holds it; a result from
-- a worker whose lease expired is still delivered: the engine applies each result once),
-- then, when asked, take the next waiting job in the same round trip (BullMQ's
-- moveToFinished): a busy worker costs one command per job. The job taken this way is
-- announced inside the finished event (field `next`, the started event's fields) rather
-- than by an event of its own.
-- KEYS: inflight, data, results, events, cancelled, waiting, jobs (the count list), wake
--       lists of the worker
-- ARGV: worker, job_id, result_json, events_maxlen, event_json, was_cancelled,
--       finished_kind, (unused), lease_ms, take_next ('1' | '0')
if redis.call('ZREM', KEYS[1], ARGV[2] .. '|' .. ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if ARGV[6] == '1' then redis.call('SREM', KEYS[5], ARGV[2]) end
local rid = redis.call('XADD', KEYS[3], '*', 'r', ARGV[3])
local got, ev = false, nil
if ARGV[10] == '1' then
  got, ev = take_next(8, KEYS[6], KEYS[7], KEYS[2], KEYS[1], KEYS[4], ARGV[1], ARGV[9],
    ARGV[4], '', tonumber(string.match(rid, '^(%d+)')))
end
local data = ARGV[5]
if ev then data = string.sub(data, 1, -2) .. ',"next":' .. cjson.encode(ev) .. '}' end
event(KEYS[4], ARGV[4], ARGV[7], data)
return got
