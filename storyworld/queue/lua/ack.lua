-- Worker: finish a job: release its lease, push the result for the engine, update the
-- heartbeat and tell consoles (with the upload events). Returns tokens still waiting for
-- this worker's backends, so an idle worker knows whether to block or take again.
-- KEYS: inflight, payloads, holders, deliveries, results, worker_hb, workers, events, stats,
--       logs, cancelled
-- ARGV: worker, job_id, result_json, status, hb_ttl, events_maxlen, event_json, wake_prefix,
--       [backends], [fields], [logs]
local worker, id = ARGV[1], ARGV[2]
local now = now_ms()
local backends, idx = take_list(9)
local fields, idx2 = take_list(idx)
local logs = take_list(idx2)
if redis.call('HGET', KEYS[3], id) == worker then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
redis.call('SREM', KEYS[11], id)
redis.call('LPUSH', KEYS[5], ARGV[3])
redis.call('HINCRBY', KEYS[9], ARGV[4], 1)
write_heartbeat(KEYS[6], KEYS[7], worker, fields, ARGV[5], now,
  {'state', 'idle', 'job', '', 'progress', ''})
push_logs(KEYS[10], logs, ARGV[5])
event(KEYS[8], ARGV[6], ARGV[4] == 'succeeded' and 'done' or 'failed', ARGV[7])
return tokens_left(ARGV[8], backends)
