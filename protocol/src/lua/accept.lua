-- Accept a batch of orders (the order service's group commit): for each, record it durably and
-- hand it to the consumers in one atomic step, so a client never gets 202 for an order that is
-- not recorded, and a recorded order is always delivered. An orderId seen before (earlier, or
-- earlier in this batch) is not recorded again: its event id and items are returned instead.
-- KEYS: 1 pending (zset), 2 stream, then per order: order-id index (hash), order record (hash)
-- ARGV: 1 retention ms, 2 delivery mode (pubsub|streams), 3 channel, then per order:
--       event id, order id, canonical items, message JSON
-- Returns three strings per order: 'accepted', event id, accept time (ms)
--                               or 'exists', the earlier event id, its canonical items.
local pending, stream = KEYS[1], KEYS[2]
local retention, mode, channel = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))

local out = {}
local a = 4
for k = 3, #KEYS, 2 do
  local index, record = KEYS[k], KEYS[k + 1]
  local id, order_id, items, message = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local existing = redis.call('HMGET', index, 'id', 'items')
  if existing[1] then
    out[#out + 1] = 'exists'
    out[#out + 1] = existing[1]
    out[#out + 1] = existing[2] or ''
  else
    redis.call('HSET', index, 'id', id, 'items', items)
    redis.call('PEXPIRE', index, retention)
    redis.call('HSET', record, 'orderId', order_id, 'message', message, 'status', 'accepted', 'acceptedAt', now)
    redis.call('PEXPIRE', record, retention)
    redis.call('ZADD', pending, now, id)
    if mode == 'streams' then
      redis.call('XADD', stream, '*', 'order', message)
    else
      redis.call('PUBLISH', channel, message)
    end
    out[#out + 1] = 'accepted'
    out[#out + 1] = id
    out[#out + 1] = now
  end
end
return out
