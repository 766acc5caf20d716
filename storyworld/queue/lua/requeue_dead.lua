-- Operator: move dead letters back to the front of their wake lists (or drop them).
-- Returns {moved, dropped, refused refs, job ids moved}.
-- KEYS: dead, waiting, data, events, jobs (the count list), wake lists of the letters
-- ARGV: mode ('requeue' | 'drop'), events_maxlen, dead_changed_kind, n, then n triples
--       (the letter's name in the dead hash: its job id or `entry:<sha>`; the job id of its
--       payload; index of its wake list among the wake KEYS from 1, 0: payload unreadable)
local moved, dropped, refused, moved_ids = 0, 0, {}, {}
local now
for i = 0, tonumber(ARGV[4]) - 1 do
  local ref, id, w = ARGV[5 + 3 * i], ARGV[6 + 3 * i], tonumber(ARGV[7 + 3 * i])
  local entry = redis.call('HGET', KEYS[1], ref)
  if entry then
    if ARGV[1] == 'drop' then
      redis.call('HDEL', KEYS[1], ref)
      dropped = dropped + 1
    else
      local ok, dl = pcall(cjson.decode, entry)
      local job = ok and type(dl) == 'table' and type(dl.payload) == 'string' and decode(dl.payload)
      if job and w > 0 and job.job_id == id then
        now = now or now_ms()
        redis.call('HSET', KEYS[3], id, with_delivery(dl.payload, 1))
        wait_add(KEYS[2], KEYS[5], now, id)
        redis.call('RPUSH', KEYS[5 + w], id)
        redis.call('HDEL', KEYS[1], ref)
        moved = moved + 1
        moved_ids[#moved_ids + 1] = id
      else
        refused[#refused + 1] = ref
      end
    end
  end
end
if moved + dropped > 0 then
  event(KEYS[4], ARGV[2], ARGV[3], cjson.encode({requeued = moved, dropped = dropped}))
end
return {moved, dropped, refused, moved_ids}
