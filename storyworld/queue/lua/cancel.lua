-- Engine: withdraw jobs: waiting ones leave the waiting set, the data hash and their wake
-- list (LREM from the newest end: the one command here that walks a list, only for an
-- operator's or the engine's withdrawal, never on a worker's or the tick's path); the
-- others are flagged so a worker holding one stops at its next heartbeat. Returns how many
-- were waiting.
-- KEYS: waiting, data, cancelled, jobs (the count list), wake lists of the jobs
-- ARGV: n, then n pairs (job id, index of its wake list among the wake KEYS from 1, 0 none)
local removed, flagged = 0, {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local id, w = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  if wait_remove(KEYS[1], KEYS[4], id) then
    redis.call('HDEL', KEYS[2], id)
    if w > 0 then redis.call('LREM', KEYS[4 + w], 1, id) end
    removed = removed + 1
  else
    flagged[#flagged + 1] = id
  end
end
if #flagged > 0 then
  bulk('SADD', KEYS[3], flagged)
  redis.call('EXPIRE', KEYS[3], 86400)
end
return removed
