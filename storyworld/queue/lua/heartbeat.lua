-- Worker: refresh the heartbeat and renew the leases of the jobs it holds. Returns the jobs
-- it no longer holds (reclaimed after an expired lease) and those cancelled by the engine.
-- KEYS: worker_hb, workers, events, inflight, holders, cancelled, logs
-- ARGV: worker, hb_ttl, lease_ms, events_maxlen, emit_event, [job ids], [fields], [logs]
local worker = ARGV[1]
local now = now_ms()
local jobs, idx = take_list(6)
local fields, idx2 = take_list(idx)
local logs = take_list(idx2)
local lost, cancelled = {}, {}
for i = 1, #jobs do
  local id = jobs[i]
  if redis.call('HGET', KEYS[5], id) == worker then
    redis.call('ZADD', KEYS[4], 'XX', now + tonumber(ARGV[3]), id)
    if redis.call('SISMEMBER', KEYS[6], id) == 1 then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
write_heartbeat(KEYS[1], KEYS[2], worker, fields, ARGV[2], now, {})
push_logs(KEYS[7], logs, ARGV[2])
if ARGV[5] == '1' then
  local hb = {}
  for i = 1, #fields, 2 do hb[fields[i]] = fields[i + 1] end
  hb.seen = now / 1000
  event(KEYS[3], ARGV[4], 'heartbeat', cjson.encode(hb))
end
return {lost, cancelled}
