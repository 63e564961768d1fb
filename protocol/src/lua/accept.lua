-- Accept a batch of orders (the order service's group commit): for each, record it durably and
-- hand it to the consumers in one atomic step, so a client never gets 202 for an order that is
-- not recorded, and a recorded order is always delivered. An orderId seen before (earlier, or
-- earlier in this batch) is not recorded again: its event id is returned instead.
-- The record gets its expiry when the order is done (apply.lua): until then it must stay.
-- Every command here costs Redis time on the hot path, so the write set is the least that keeps
-- the promise: one record per order, its delivery, and (pubsub) one pending-index entry, added
-- for the whole batch in one ZADD.
-- KEYS: 1 pending (zset), 2 stream, then per order: order record (hash)
-- ARGV: 1 delivery mode (pubsub|streams), 2 channel, then per order:
--       event id, order id, canonical items, message JSON
-- Returns three strings per order: 'accepted', event id, accept time (ms)
--                               or 'exists' (same items) / 'conflict' (other items), the
--                                  earlier event id, ''
--                               or 'error', what Redis said, ''.
local pending, stream = KEYS[1], KEYS[2]
local mode, channel = ARGV[1], ARGV[2]
local waiting = {}
local now = now_ms()

-- The batch's shared keys must be of the right type before anything is written: a write to
-- them failing half-way through would leave orders recorded but not delivered.
local mistyped = wrong_type({[pending] = 'zset', [stream] = 'stream'})
if mistyped then
  return mistyped
end

-- Every read that could fail (a record key of the wrong type) comes before the writes, so an
-- order Redis refuses has changed nothing, and it does not stop the orders behind it.
local function accept(record, id, order_id, items, message)
  local existing = redis.call('HMGET', record, 'id', 'items')
  if existing[1] then
    -- A retry with the same items gets the same answer; other items under the same orderId
    -- are another order.
    return existing[2] == items and 'exists' or 'conflict', existing[1], ''
  end
  redis.call('HSET', record, 'id', id, 'items', items, 'message', message,
    'status', 'accepted', 'acceptedAt', now)
  if mode == 'streams' then
    -- The stream and its consumer group's pending list are the delivery record here.
    redis.call('XADD', stream, '*', 'order', message)
  else
    redis.call('PUBLISH', channel, message)
    waiting[#waiting + 1] = now
    waiting[#waiting + 1] = order_id
  end
  return 'accepted', id, now
end

local out = {}
local a = 3
for k = 3, #KEYS do
  local ok, outcome, detail, more = pcall(accept, KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  a = a + 4
  if not ok then
    outcome, detail, more = 'error', type(outcome) == 'table' and outcome.err or tostring(outcome), ''
  end
  out[#out + 1] = outcome
  out[#out + 1] = detail
  out[#out + 1] = more
end
-- In slices: Lua's unpack is limited to a few thousand values.
for i = 1, #waiting, 512 do
  redis.call('ZADD', pending, unpack(waiting, i, math.min(i + 511, #waiting)))
end
return out
