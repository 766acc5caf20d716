-- Engine, on a timer: one round trip made of separate parts (BullMQ-style), each cheap and
-- none reading the backlog:
--   renew    the dispatch lease (fenced: nothing else runs if another engine holds it);
--   reclaim  jobs whose lease expired, a bounded batch per call (its own throttle, set by
--            the caller): handed out again, or dead-lettered after too many deliveries;
--   sweep    the worker registry, and wake-list repair: a job waiting past `repair_age_ms`
--            whose wake list is empty lost its wake entry (a worker died between popping it
--            and claiming it), so its id goes back on that list;
--   collect  what the engine must apply: new dead letters, jobs in flight (with worker),
--            the pause flag, results (acknowledging those applied; after a failure,
--            `recover` returns the ones delivered but never acknowledged).
-- KEYS: engine_lease, inflight, data, waiting, dead, dead_new, events, stats, results, paused,
--       workers, jobs (the count list), then the wake lists of the suffixes in ARGV (same
--       order)
-- ARGV: 1 token, 2 lease_ms, 3 parts ('r' reclaim, 's' sweep, 'g' recover), 4 max_deliveries,
--       5 events_maxlen, 6 max_results, 7 vram classes "8,16,...", 8 reclaim batch,
--       9 repair_age_ms, 10 requeued_kind, 11 dead_kind, 12 results group, 13 max in flight
--       listed, 14 payload limit for letters, then [wake suffixes], [acknowledged result ids]
local W0 = 12  -- wake KEYS start after this index
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local parts = ARGV[3]
local suffixes, idx = take_list(15)
local acks = take_list(idx)
local wake_index = {}
for i, s in ipairs(suffixes) do wake_index[s] = W0 + i end
local now = now_ms()
local maxlen, classes = ARGV[5], ARGV[7]

local function file_dead(id, reason, raw, worker)
  redis.call('HSET', KEYS[5], id, cjson.encode({job_id = id, reason = reason,
    payload = string.sub(raw, 1, tonumber(ARGV[14])), size = #raw, at = now / 1000,
    worker = worker}))
  redis.call('HSET', KEYS[6], id, reason)
  redis.call('HINCRBY', KEYS[8], 'dead', 1)
  event(KEYS[7], maxlen, ARGV[11], cjson.encode({job_id = id, reason = reason, worker = worker}))
end

local function reclaim()
  local reclaimed, unroutable = {}, {}
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
  for _, member in ipairs(expired) do
    local sep = string.find(member, '|', 1, true)
    local id, holder = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local raw = redis.call('HGET', KEYS[3], id)
    local job = raw and decode(raw)
    local wake = job and wake_index[wake_suffix(job, classes)]
    if job and not wake then
      unroutable[#unroutable + 1] = wake_suffix(job, classes)  -- next tick passes its list
    else
      redis.call('ZREM', KEYS[2], member)
      local delivery = job and (tonumber(job.delivery) or 1) or 0
      if not job then
        redis.call('HDEL', KEYS[3], id)
        file_dead(id, 'lease expired and the payload is missing or unreadable', raw or '',
          holder)
      elseif delivery >= tonumber(ARGV[4]) then
        redis.call('HDEL', KEYS[3], id)
        file_dead(id, 'lease expired on each of ' .. delivery .. ' deliveries (last worker '
          .. holder .. ')', raw, holder)
      else
        redis.call('HSET', KEYS[3], id, with_delivery(raw, delivery + 1))
        wait_add(KEYS[4], KEYS[12], now, id)
        redis.call('RPUSH', KEYS[wake], id)
        redis.call('HINCRBY', KEYS[8], 'reclaimed', 1)
        reclaimed[#reclaimed + 1] = id
        event(KEYS[7], maxlen, ARGV[10], cjson.encode({job_id = id, worker = holder,
          reason = 'lease expired'}))
      end
    end
  end
  return reclaimed, unroutable
end

local function sweep()
  -- Workers not seen for a day leave the registry (their heartbeats expired long ago).
  redis.call('ZREMRANGEBYSCORE', KEYS[11], '-inf', math.floor(now / 1000) - 86400)
  local repaired = 0
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[9]),
    'LIMIT', 0, 16)
  for _, id in ipairs(old) do
    local raw = redis.call('HGET', KEYS[3], id)
    local job = raw and decode(raw)
    if not raw then
      wait_remove(KEYS[4], KEYS[12], id)  -- an id with no payload can never run
    elseif not job then
      wait_remove(KEYS[4], KEYS[12], id)
      redis.call('HDEL', KEYS[3], id)
      file_dead(id, 'unparseable job message', raw, '')
    else
      local wake = wake_index[wake_suffix(job, classes)]
      if wake and redis.call('LLEN', KEYS[wake]) == 0 then
        redis.call('RPUSH', KEYS[wake], id)
        repaired = repaired + 1
      end
    end
  end
  return repaired
end

local function collect()
  local dead = redis.call('HGETALL', KEYS[6])
  if #dead > 0 then redis.call('DEL', KEYS[6]) end
  local inflight = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[13]) - 1)
  local group = ARGV[12]
  if #acks > 0 then  -- at most 1000 (the caller splits bigger batches)
    redis.call('XACK', KEYS[9], group, unpack(acks))
    redis.call('XDEL', KEYS[9], unpack(acks))
  end
  -- After a failure: what was delivered to the engine before and never acknowledged.
  local from = string.find(parts, 'g', 1, true) and '0' or '>'
  local results = {}
  local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', group, group, 'COUNT',
    tonumber(ARGV[6]), 'STREAMS', KEYS[9], from)
  if not ok then
    -- No group yet (first start, or a Redis that lost its data): every entry still in the
    -- stream is unacknowledged (acknowledged ones are deleted), so the group starts at 0.
    redis.call('XGROUP', 'CREATE', KEYS[9], group, '0', 'MKSTREAM')
    reply = redis.call('XREADGROUP', 'GROUP', group, group, 'COUNT', tonumber(ARGV[6]),
      'STREAMS', KEYS[9], '>')
  end
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields = entry[2]
      local raw = ''
      if type(fields) == 'table' then
        for i = 1, #fields, 2 do if fields[i] == 'r' then raw = fields[i + 1] end end
      end
      results[#results + 1] = entry[1]
      results[#results + 1] = raw
    end
  end
  return dead, inflight, results, redis.call('EXISTS', KEYS[10])
end

local reclaimed, unroutable, repaired = {}, {}, 0
if string.find(parts, 'r', 1, true) then reclaimed, unroutable = reclaim() end
if string.find(parts, 's', 1, true) then repaired = sweep() end
local dead, inflight, results, paused = collect()
return {1, inflight, reclaimed, dead, results, paused, repaired, unroutable}
