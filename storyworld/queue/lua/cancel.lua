-- Engine: withdraw jobs: waiting ones leave the waiting set and the data hash (their wake
-- entries are skipped when popped); the others are flagged so a worker holding one stops at
-- its next heartbeat. Returns how many were waiting.
-- KEYS: jobs, data, cancelled
-- ARGV: [job ids]
local removed, flagged = 0, {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[i])
    removed = removed + 1
  else
    flagged[#flagged + 1] = ARGV[i]
  end
end
if #flagged > 0 then
  bulk('SADD', KEYS[3], flagged)
  redis.call('EXPIRE', KEYS[3], 86400)
end
return removed
