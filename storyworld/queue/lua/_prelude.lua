-- Shared helpers, prepended to every script. Server time, so workers' clocks don't matter.
-- Every key a script touches arrives in KEYS; constants (VRAM classes, event kinds) arrive
-- in ARGV from their single Python definition.
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
-- One command with many arguments, in chunks (Lua's unpack has a limit).
local function bulk(cmd, key, args)
  local i = 1
  while i <= #args do
    local j = math.min(#args, i + 999)
    redis.call(cmd, key, unpack(args, i, j))
    i = j + 1
  end
end
-- `bulk` for ZADD: how many members were new.
local function bulk_added(key, args)
  local added, i = 0, 1
  while i <= #args do
    local j = math.min(#args, i + 999)
    added = added + redis.call('ZADD', key, unpack(args, i, j))
    i = j + 1
  end
  return added
end
local function decode(raw)
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' and type(job.job_id) == 'string'
      and type(job.backend) == 'string' then
    return job
  end
  return nil
end
-- Wake list of a job: its backend, plus the smallest memory class that fits. `classes` is
-- the ARGV value "8,16,24,..." (Keys.wake_suffix in Python is the same rule).
local function wake_suffix(job, classes)
  local need = tonumber(job.min_vram_gb) or 0
  if need <= 0 then return job.backend end
  local last
  for c in string.gmatch(classes, '[^,]+') do
    last = c
    if need <= tonumber(c) then return job.backend .. '@' .. c end
  end
  return job.backend .. '@' .. last
end
-- The payload with its delivery count set. Edited as text: re-encoding with cjson would turn
-- empty arrays into objects.
local function with_delivery(raw, n)
  local out, count = string.gsub(raw, '"delivery":%s*%d+', '"delivery":' .. n, 1)
  if count == 0 then out = string.sub(raw, 1, -2) .. ',"delivery":' .. n .. '}' end
  return out
end
-- Waiting jobs: ids in the `waiting` zset (scored by enqueue time), and `JOB_QUEUE` itself
-- (`k_count`) a list with one entry per waiting job, kept so that `LLEN JOB_QUEUE` stays the
-- number of jobs waiting (the deployment guide's habit, and what autoscalers read). Entries
-- are job ids pushed on arrival and popped from the oldest end whichever job leaves, so the
-- length is exact at O(1) a job; the zset says which jobs they are.
local function wait_add(k_waiting, k_count, score, id)
  if redis.call('ZADD', k_waiting, score, id) == 1 then redis.call('LPUSH', k_count, id) end
end
local function wait_remove(k_waiting, k_count, id)
  if redis.call('ZREM', k_waiting, id) == 1 then
    redis.call('RPOP', k_count)
    return true
  end
  return false
end
-- Claim the waiting job `id` for `worker`: false if it no longer waits (withdrawn, or a
-- stale duplicate left on a wake list by a repair). Writes a `kind` event unless kind is ''
-- (then `now`, the server time in ms, must be given). Returns the payload and the event.
local function claim(k_jobs, k_count, k_data, k_inflight, k_events, id, worker, lease_ms,
                     maxlen, kind, now)
  if not wait_remove(k_jobs, k_count, id) then return false end
  local raw = redis.call('HGET', k_data, id)
  if not raw then return false end
  local ev = {job_id = id, worker = worker}
  local job = decode(raw)
  if job then
    ev.episode_id = job.episode_id
    ev.beat_index = job.beat_index
    ev.backend = job.backend
    ev.delivery = job.delivery
  end
  if kind ~= '' then now = event(k_events, maxlen, kind, cjson.encode(ev)) end
  redis.call('ZADD', k_inflight, now + tonumber(lease_ms), id .. '|' .. worker)
  return raw, ev
end
-- Pop and claim the next waiting job from the wake lists KEYS[first..#KEYS] (LMPOP takes
-- from the first non-empty one). Stale entries are consumed on the way, a bounded number.
-- Returns {id, payload} and the started event's fields, or false.
local function take_next(first, k_jobs, k_count, k_data, k_inflight, k_events, worker, lease_ms,
                         maxlen, kind, now)
  local n = #KEYS - first + 1
  if n <= 0 then return false end
  local args = {n}
  for i = first, #KEYS do args[#args + 1] = KEYS[i] end
  args[#args + 1] = 'RIGHT'
  for _ = 1, 16 do
    local got = redis.call('LMPOP', unpack(args))
    if not got then return false end
    local raw, ev = claim(k_jobs, k_count, k_data, k_inflight, k_events, got[2][1], worker,
      lease_ms, maxlen, kind, now)
    if raw then return {got[2][1], raw}, ev end
  end
  return false
end
