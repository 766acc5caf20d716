-- Engine: queue jobs, fenced by the engine lease. Payloads go in the data hash, ids in the
-- waiting set (scored by time) and on their wake lists, which workers pop.
-- KEYS: engine_lease, waiting, data, events, jobs (the count list), wake lists (distinct)
-- ARGV: token, events_maxlen, enqueued_kind, n, then n triples (job id, payload, index of
--       its wake list among the wake KEYS, from 1)
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[4])
if n == 0 then return 0 end
local now = event(KEYS[4], ARGV[2], ARGV[3], cjson.encode({count = n}))
local hargs, zargs, per, ids = {}, {}, {}, {}
for i = 0, n - 1 do
  local id, raw, w = ARGV[5 + 3 * i], ARGV[6 + 3 * i], tonumber(ARGV[7 + 3 * i])
  ids[#ids + 1] = id
  hargs[#hargs + 1] = id
  hargs[#hargs + 1] = raw
  zargs[#zargs + 1] = now
  zargs[#zargs + 1] = id
  per[w] = per[w] or {}
  table.insert(per[w], id)
end
bulk('HSET', KEYS[3], hargs)
-- One count entry per job that was not already waiting (the count list stays exact).
local added = bulk_added(KEYS[2], zargs)
if added < #ids then ids = {unpack(ids, 1, added)} end
bulk('LPUSH', KEYS[5], ids)
for w, wids in pairs(per) do bulk('LPUSH', KEYS[5 + w], wids) end
return n
