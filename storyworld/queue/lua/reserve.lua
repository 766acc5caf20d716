-- Worker: take the oldest waiting job this worker can run, atomically recording its lease,
-- its delivery count and the worker's heartbeat. Unparseable messages go to dead letters.
-- KEYS: jobs, inflight, payloads, holders, deliveries, started, dead, dead_new, worker_hb,
--       workers, events, stats, logs
-- ARGV: worker, lease_ms, hb_ttl, wake_prefix, max_scan, vram_gb, wanted_id, token_backend,
--       events_maxlen, [backends], [heartbeat field/value pairs], [log lines]
local worker = ARGV[1]
local now = now_ms()
local backends, idx = take_list(10)
local fields, idx2 = take_list(idx)
local logs = take_list(idx2)
local can = {}
for i = 1, #backends do can[backends[i]] = true end
local vram = tonumber(ARGV[6]) or 0
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[5]), -1)
local chosen_raw, chosen = nil, nil
local present = {}
for i = #items, 1, -1 do
  local raw = items[i]
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' or type(job.job_id) ~= 'string' or type(job.backend) ~= 'string' then
    redis.call('LREM', KEYS[1], 1, raw)
    local id = (ok and type(job) == 'table' and type(job.job_id) == 'string') and job.job_id or ''
    local reason = 'unparseable job message'
    redis.call('LPUSH', KEYS[7], cjson.encode({job_id = id, reason = reason, payload = raw,
      at = now / 1000, worker = worker}))
    if id ~= '' then redis.call('HSET', KEYS[8], id, reason) end
    redis.call('HINCRBY', KEYS[12], 'dead', 1)
    event(KEYS[11], ARGV[9], 'dead', cjson.encode({job_id = id, reason = reason, worker = worker}))
  elseif can[job.backend] and (tonumber(job.min_vram_gb) or 0) <= vram then
    present[job.backend] = true
    if chosen == nil then chosen_raw, chosen = raw, job end
    if job.job_id == ARGV[7] then chosen_raw, chosen = raw, job; break end
  end
end
if chosen == nil then
  -- Nothing for us: any token left on our wake lists is stale.
  for i = 1, #backends do
    if not present[backends[i]] then redis.call('DEL', ARGV[4] .. backends[i]) end
  end
  write_heartbeat(KEYS[9], KEYS[10], worker, fields, ARGV[3], now,
    {'state', 'idle', 'job', '', 'progress', ''})
  push_logs(KEYS[13], logs, ARGV[3])
  return {'', 0, 0}
end
local id = chosen.job_id
redis.call('LREM', KEYS[1], 1, chosen_raw)
local deliveries = redis.call('HINCRBY', KEYS[5], id, 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[3], id, chosen_raw)
redis.call('HSET', KEYS[4], id, worker)
redis.call('HSET', KEYS[6], id, worker .. '|' .. tostring(now / 1000))
-- Keep one token per waiting job: consume the token of the backend we took.
local b = chosen.backend
if ARGV[8] == '' then
  redis.call('RPOP', ARGV[4] .. b)
elseif ARGV[8] ~= b then
  redis.call('LPUSH', ARGV[4] .. ARGV[8], ARGV[7])
  redis.call('RPOP', ARGV[4] .. b)
end
write_heartbeat(KEYS[9], KEYS[10], worker, fields, ARGV[3], now,
  {'state', 'busy', 'job', id, 'episode', tostring(chosen.episode_id),
   'beat', tostring(chosen.beat_index), 'progress', '0'})
push_logs(KEYS[13], logs, ARGV[3])
event(KEYS[11], ARGV[9], 'started', cjson.encode({job_id = id, worker = worker,
  episode_id = chosen.episode_id, beat_index = chosen.beat_index, backend = b,
  delivery = deliveries}))
return {chosen_raw, deliveries, tokens_left(ARGV[4], backends)}
