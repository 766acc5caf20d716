-- Shared helpers, prepended to every script. Server time, so workers' clocks don't matter.
-- In-flight jobs are members "job_id|worker" of the inflight zset (score: lease deadline,
-- ms), so one ZREM or ZADD XX both checks the holder and acts.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Append an event; returns the server time (ms) from the entry id, so a script that writes
-- an event needs no separate TIME call.
local function event(stream, maxlen, kind, data)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'data', data)
  return tonumber(string.match(id, '^(%d+)'))
end
-- Read a counted list from ARGV starting at idx: returns the list and the next index.
local function take_list(idx)
  local n = tonumber(ARGV[idx])
  local out = {}
  for i = 1, n do out[i] = ARGV[idx + i] end
  return out, idx + n + 1
end
local function decode(raw)
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' and type(job.job_id) == 'string'
      and type(job.backend) == 'string' then
    return job
  end
  return nil
end
-- Wake list of a job: its backend, plus a memory class for jobs that need a big GPU (the
-- same rule as Keys.wake_suffix in Python).
local VRAM_CLASSES = {8, 16, 24, 32, 48, 80, 141}
local function wake_suffix(job)
  local need = tonumber(job.min_vram_gb) or 0
  if need <= 0 then return job.backend end
  for _, c in ipairs(VRAM_CLASSES) do
    if need <= c then return job.backend .. '@' .. c end
  end
  return job.backend .. '@' .. VRAM_CLASSES[#VRAM_CLASSES]
end
-- The payload with its delivery count set. Edited as text: re-encoding with cjson would turn
-- empty arrays into objects.
local function with_delivery(raw, n)
  local out, count = string.gsub(raw, '"delivery":%s*%d+', '"delivery":' .. n, 1)
  if count == 0 then out = string.sub(raw, 1, -2) .. ',"delivery":' .. n .. '}' end
  return out
end
