-- Worker: refresh the heartbeat and renew the leases of the jobs it holds. Returns the jobs
-- it no longer holds (reclaimed after an expired lease) and those cancelled by the engine.
-- KEYS: worker_hb, workers, events, inflight, cancelled, logs
-- ARGV: worker, hb_ttl, lease_ms, events_maxlen, emit_event, heartbeat_kind, [job ids],
--       [fields], [logs]
local worker = ARGV[1]
local jobs, idx = take_list(7)
local fields, idx2 = take_list(idx)
local logs = take_list(idx2)
local now
if ARGV[5] == '1' then
  local hb = {}
  for i = 1, #fields, 2 do hb[fields[i]] = fields[i + 1] end
  now = event(KEYS[3], ARGV[4], ARGV[6], cjson.encode(hb))
else
  now = now_ms()
end
local lost, cancelled = {}, {}
local any_cancelled = #jobs > 0 and redis.call('EXISTS', KEYS[5]) == 1
for i = 1, #jobs do
  local id = jobs[i]
  local member = id .. '|' .. worker
  -- CH counts 0 also when the deadline is unchanged (renewed within the same millisecond):
  -- only a member that is gone means the lease was lost.
  if redis.call('ZADD', KEYS[4], 'XX', 'CH', now + tonumber(ARGV[3]), member) == 0
      and not redis.call('ZSCORE', KEYS[4], member) then
    lost[#lost + 1] = id
  elseif any_cancelled and redis.call('SISMEMBER', KEYS[5], id) == 1 then
    cancelled[#cancelled + 1] = id
  end
end
fields[#fields + 1] = 'seen'
fields[#fields + 1] = tostring(now)
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], math.floor(now / 1000), worker)
if #logs > 0 then
  redis.call('RPUSH', KEYS[6], unpack(logs))
  redis.call('LTRIM', KEYS[6], -500, -1)
  redis.call('EXPIRE', KEYS[6], ARGV[2])
end
return {lost, cancelled}
