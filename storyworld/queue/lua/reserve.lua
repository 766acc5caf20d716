-- Worker: claim the job whose id it just popped from a wake list (blocking there while
-- idle); if that one no longer waits, take the next one waiting on the same lists.
-- Returns {job id, payload} or false.
-- KEYS: waiting, data, inflight, events, jobs (the count list), wake lists of the worker
-- ARGV: worker, lease_ms, events_maxlen, started_kind, job id ('' = just take the next)
if ARGV[5] ~= '' then
  local raw = claim(KEYS[1], KEYS[5], KEYS[2], KEYS[3], KEYS[4], ARGV[5], ARGV[1], ARGV[2],
    ARGV[3], ARGV[4], nil)
  if raw then return {ARGV[5], raw} end
end
return take_next(6, KEYS[1], KEYS[5], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3],
  ARGV[4], nil)
