-- Pub/Sub: count the applies Redis refused (an item's stock that is not a whole number, a key
-- of the wrong type), fleet-wide, and dead-letter an order once it has been refused
-- `max deliveries` times, as streams mode does: otherwise every replica would re-drive it
-- forever and its record would say accepted forever. Only a refusal reported by the apply
-- script counts; a lost connection says nothing about the order and is never counted.
-- A dead-lettered order leaves the pending index, and its count is removed.
-- KEYS: 1 refusals (hash orderId -> count), 2 pending (zset), 3 dead-letter stream, then per
--       order: order record (hash)
-- ARGV: 1 consumer, 2 retention ms, 3 dead-letter stream maxlen, 4 max deliveries, then per
--       order: order id, event id, message JSON (the payload if the record has none), error
-- Returns two strings per order: 'counted' | 'dead-lettered' | 'done' (its record is final or
-- belongs to another event: nothing to count), then the count ('' for 'done'); or 'error' and
-- what Redis said (that order's count is unchanged; the others are counted all the same).
local refusals, pending, dead_letter = KEYS[1], KEYS[2], KEYS[3]
local consumer, retention, maxlen, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local mistyped = wrong_type({[refusals] = 'hash', [pending] = 'zset', [dead_letter] = 'stream'})
if mistyped then
  return mistyped
end

local function refused(record, order_id, id, message, error_text)
  -- A record Redis cannot read is often why the apply was refused: count it all the same.
  local ok, rec = pcall(redis.call, 'HMGET', record, 'status', 'id', 'message')
  if not ok then
    rec = {}
  end
  local status, owner, recorded = rec[1], rec[2], rec[3]
  if (status and status ~= 'accepted') or (owner and owner ~= id) then
    redis.call('HDEL', refusals, order_id)
    return 'done', ''
  end
  local counted, n = pcall(redis.call, 'HINCRBY', refusals, order_id, 1)
  if not counted then
    -- A count that is not a number (written by hand) would fail every delivery and keep the
    -- order pending forever: it starts again.
    redis.call('HSET', refusals, order_id, 1)
    n = 1
  end
  if n < max then
    return 'counted', tostring(n)
  end
  local reason = 'apply failed after ' .. n .. ' deliveries: ' .. error_text
  add_dead_letter(dead_letter, maxlen, '', recorded or message, reason, consumer, tostring(n))
  mark_dead_lettered(record, reason, consumer, retention, id, recorded or message)
  redis.call('ZREM', pending, order_id)
  redis.call('HDEL', refusals, order_id)
  return 'dead-lettered', tostring(n)
end

local out = {}
local a = 5
for k = 4, #KEYS do
  -- One order's error (a count that is not a number) must not stop the orders behind it.
  local ok, outcome, count = pcall(refused, KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  a = a + 4
  if not ok then
    outcome, count = 'error', type(outcome) == 'table' and outcome.err or tostring(outcome)
  end
  out[#out + 1] = outcome
  out[#out + 1] = count
end
return out
