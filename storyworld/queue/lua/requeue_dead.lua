-- Operator: move dead letters back to the front of the queue (or drop them). Returns
-- {moved, dropped, refused refs, job ids moved}.
-- KEYS: dead, jobs, events
-- ARGV: mode ('requeue' | 'drop'), wake_prefix, events_maxlen, [job ids or 'entry:<first 16
--       hex of the entry's SHA-1>' for entries without a job id] (none = all)
local selected = {}
local all = #ARGV <= 3
for i = 4, #ARGV do selected[ARGV[i]] = true end
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local moved, dropped, refused, moved_ids = 0, 0, {}, {}
for i = #entries, 1, -1 do
  local entry = entries[i]
  local ok, dl = pcall(cjson.decode, entry)
  local id = (ok and type(dl) == 'table' and type(dl.job_id) == 'string') and dl.job_id or ''
  local ref = id ~= '' and id or ('entry:' .. string.sub(redis.sha1hex(entry), 1, 16))
  if all or selected[ref] then
    if ARGV[1] == 'drop' then
      redis.call('LREM', KEYS[1], 1, entry)
      dropped = dropped + 1
    else
      local job = ok and type(dl.payload) == 'string' and decode(dl.payload)
      if job then
        local again = with_delivery(dl.payload, 1)
        redis.call('LREM', KEYS[1], 1, entry)
        redis.call('RPUSH', KEYS[2], again)
        redis.call('RPUSH', ARGV[2] .. wake_suffix(job), again)
        moved = moved + 1
        moved_ids[#moved_ids + 1] = id
      else
        refused[#refused + 1] = ref
      end
    end
  end
end
if moved + dropped > 0 then
  event(KEYS[3], ARGV[3], 'dead_changed', cjson.encode({requeued = moved, dropped = dropped}))
end
return {moved, dropped, refused, moved_ids}
