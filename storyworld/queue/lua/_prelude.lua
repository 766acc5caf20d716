-- Shared helpers, prepended to every script. Server time, so clocks of workers don't matter.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function event(stream, maxlen, kind, data)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'data', data)
end
-- Read a counted list from ARGV starting at idx: returns the list and the next index.
local function take_list(idx)
  local n = tonumber(ARGV[idx])
  local out = {}
  for i = 1, n do out[i] = ARGV[idx + i] end
  return out, idx + n + 1
end
local function write_heartbeat(hb_key, workers_key, worker, fields, ttl, now, extra)
  local args = {}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  for i = 1, #extra do args[#args + 1] = extra[i] end
  args[#args + 1] = 'seen'
  args[#args + 1] = tostring(now)
  redis.call('HSET', hb_key, unpack(args))
  redis.call('EXPIRE', hb_key, ttl)
  redis.call('ZADD', workers_key, math.floor(now / 1000), worker)
end
local function push_logs(logs_key, logs, ttl)
  if #logs > 0 then
    redis.call('RPUSH', logs_key, unpack(logs))
    redis.call('LTRIM', logs_key, -500, -1)
    redis.call('EXPIRE', logs_key, ttl)
  end
end
local function tokens_left(prefix, backends)
  local n = 0
  for i = 1, #backends do n = n + redis.call('LLEN', prefix .. backends[i]) end
  return n
end
