-- Remove from the consumer group the consumers that are gone: nothing pending and idle for at
-- least the given time. Pods of a Deployment get new names on every restart, so without this
-- the group collects one dead consumer per restart. The check and the removal are one atomic
-- step: XGROUP DELCONSUMER drops a consumer's pending entries, so a consumer that took an
-- entry in between must never be removed.
-- KEYS: 1 stream; ARGV: 1 group, 2 minimum idle ms, 3 the caller (never removed)
-- Returns the names removed.
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do
    info[c[i]] = c[i + 1]
  end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
