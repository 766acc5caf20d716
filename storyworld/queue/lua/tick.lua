-- Engine, on a timer (reclaim interval while jobs are in flight, idle block otherwise):
-- renew the dispatch lease (fenced), hand out again jobs whose lease expired (or dead-letter
-- them after too many deliveries), sweep unreadable messages off the waiting list, and
-- collect what the engine must apply: jobs in flight (with their worker), dead jobs, and
-- results not yet acknowledged.
-- KEYS: engine_lease, inflight, data, jobs, dead, dead_new, events, stats, results,
--       processing, paused, workers
-- ARGV: token, lease_ms, max_deliveries, wake_prefix, events_maxlen, max_results,
--       repair ('1': rebuild wake lists that lost payloads), recover ('1': return every
--       unacknowledged result, also those stranded by a lost reply)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local now = now_ms()
local inflight, reclaimed = {}, {}
local members = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local member, deadline = members[i], tonumber(members[i + 1])
  local sep = string.find(member, '|', 1, true)
  local id, holder = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  if deadline > now then
    inflight[#inflight + 1] = member
  else
    redis.call('ZREM', KEYS[2], member)
    local raw = redis.call('HGET', KEYS[3], id)
    redis.call('HDEL', KEYS[3], id)
    local job = raw and decode(raw)
    if job then
      local delivery = tonumber(job.delivery) or 1
      if delivery >= tonumber(ARGV[3]) then
        local reason = 'lease expired on each of ' .. delivery .. ' deliveries (last worker '
          .. holder .. ')'
        redis.call('LPUSH', KEYS[5], cjson.encode({job_id = id, reason = reason, payload = raw,
          at = now / 1000, worker = holder}))
        redis.call('HSET', KEYS[6], id, reason)
        redis.call('HINCRBY', KEYS[8], 'dead', 1)
        event(KEYS[7], ARGV[5], 'dead', cjson.encode({job_id = id, reason = reason,
          worker = holder}))
      else
        local again = with_delivery(raw, delivery + 1)
        redis.call('RPUSH', KEYS[4], again)
        redis.call('RPUSH', ARGV[4] .. wake_suffix(job), again)
        redis.call('HINCRBY', KEYS[8], 'reclaimed', 1)
        reclaimed[#reclaimed + 1] = id
        event(KEYS[7], ARGV[5], 'requeued', cjson.encode({job_id = id, worker = holder,
          reason = 'lease expired'}))
      end
    end
  end
end
-- Sweep the waiting list: unreadable messages go to dead letters; with `repair`, wake lists
-- that hold fewer payloads than their backend has waiting jobs are rebuilt.
local waiting = redis.call('LRANGE', KEYS[4], 0, -1)
local per_backend = {}
for i = #waiting, 1, -1 do
  local raw = waiting[i]
  local job = decode(raw)
  if not job then
    redis.call('LREM', KEYS[4], 1, raw)
    redis.call('LPUSH', KEYS[5], cjson.encode({job_id = '', reason = 'unparseable job message',
      payload = raw, at = now / 1000, worker = ''}))
    redis.call('HINCRBY', KEYS[8], 'dead', 1)
    event(KEYS[7], ARGV[5], 'dead', cjson.encode({job_id = '', reason = 'unparseable job message'}))
  elseif ARGV[7] == '1' then
    per_backend[job.backend] = per_backend[job.backend] or {}
    local list = per_backend[job.backend]
    list[#list + 1] = raw
  end
end
local repaired = 0
for b, list in pairs(per_backend) do
  if redis.call('LLEN', ARGV[4] .. b) < #list then
    redis.call('DEL', ARGV[4] .. b)
    for i = 1, #list do redis.call('LPUSH', ARGV[4] .. b, list[i]) end
    repaired = repaired + #list
  end
end
-- Workers not seen for a day leave the registry (their heartbeats expired long ago).
redis.call('ZREMRANGEBYSCORE', KEYS[12], '-inf', math.floor(now / 1000) - 86400)
local dead = redis.call('HGETALL', KEYS[6])
if #dead > 0 then redis.call('DEL', KEYS[6]) end
-- Results: the engine acknowledges applied ones with LREM on its next wait; after a
-- failure (`recover`) every unacknowledged one is returned again.
local results = {}
if ARGV[8] == '1' then results = redis.call('LRANGE', KEYS[10], 0, -1) end
local moved = redis.call('LMPOP', 1, KEYS[9], 'RIGHT', 'COUNT', tonumber(ARGV[6]))
if moved then
  redis.call('LPUSH', KEYS[10], unpack(moved[2]))
  if ARGV[8] == '1' then
    results = redis.call('LRANGE', KEYS[10], 0, -1)
  else
    for i = #moved[2], 1, -1 do results[#results + 1] = moved[2][i] end
  end
end
return {1, inflight, reclaimed, dead, results, redis.call('EXISTS', KEYS[11]), repaired}
