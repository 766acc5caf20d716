-- Engine, once per loop: renew the dispatch lease (fenced), acknowledge the last batch of
-- results, hand out again jobs whose lease expired (or dead-letter them after too many
-- deliveries), and collect jobs started, jobs dead and the next batch of results.
-- KEYS: engine_lease, results, results_processing, inflight, payloads, holders, deliveries,
--       jobs, dead, dead_new, started, events, stats, paused
-- ARGV: token, lease_ms, max_results, max_deliveries, wake_prefix, events_maxlen,
--       [results applied since the last tick]
-- Returns every result not yet acknowledged (also any stranded by a lost reply).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 7, #ARGV do redis.call('LREM', KEYS[3], 1, ARGV[i]) end
local now = now_ms()
local reclaimed = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 200)
for i = 1, #expired do
  local id = expired[i]
  local raw = redis.call('HGET', KEYS[5], id)
  local holder = redis.call('HGET', KEYS[6], id) or '?'
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  if raw then
    local d = tonumber(redis.call('HGET', KEYS[7], id)) or 0
    if d >= tonumber(ARGV[4]) then
      redis.call('HDEL', KEYS[7], id)
      local reason = 'lease expired on each of ' .. d .. ' deliveries (last worker ' .. holder .. ')'
      redis.call('LPUSH', KEYS[9], cjson.encode({job_id = id, reason = reason, payload = raw,
        at = now / 1000, worker = holder}))
      redis.call('HSET', KEYS[10], id, reason)
      redis.call('HINCRBY', KEYS[13], 'dead', 1)
      event(KEYS[12], ARGV[6], 'dead', cjson.encode({job_id = id, reason = reason, worker = holder}))
    else
      redis.call('RPUSH', KEYS[8], raw)
      local ok, job = pcall(cjson.decode, raw)
      if ok and type(job) == 'table' and type(job.backend) == 'string' then
        redis.call('LPUSH', ARGV[5] .. job.backend, id)
      end
      redis.call('HINCRBY', KEYS[13], 'reclaimed', 1)
      reclaimed[#reclaimed + 1] = id
      event(KEYS[12], ARGV[6], 'requeued', cjson.encode({job_id = id, worker = holder,
        reason = 'lease expired'}))
    end
  end
end
local started = redis.call('HGETALL', KEYS[11])
if #started > 0 then redis.call('DEL', KEYS[11]) end
local dead = redis.call('HGETALL', KEYS[10])
if #dead > 0 then redis.call('DEL', KEYS[10]) end
for i = 1, tonumber(ARGV[3]) do
  if not redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') then break end
end
local results = redis.call('LRANGE', KEYS[3], 0, -1)
return {1, results, started, reclaimed, dead, redis.call('EXISTS', KEYS[14])}
