-- Record an accepted order durably and hand it to the consumers, in one atomic step: a client
-- never gets 202 for an order that is not recorded, and a recorded order is always delivered.
-- KEYS: 1 order-id index (hash), 2 order record (hash), 3 pending (zset), 4 stream
-- ARGV: 1 event id, 2 order id, 3 canonical items, 4 message JSON, 5 retention ms,
--       6 delivery mode (pubsub|streams), 7 channel
local existing = redis.call('HMGET', KEYS[1], 'id', 'items')
if existing[1] then
  return {'exists', existing[1], existing[2] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'items', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], 'orderId', ARGV[2], 'message', ARGV[4], 'status', 'accepted', 'acceptedAt', now)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[1])
if ARGV[6] == 'streams' then
  redis.call('XADD', KEYS[4], '*', 'order', ARGV[4])
else
  redis.call('PUBLISH', ARGV[7], ARGV[4])
end
return {'accepted', ARGV[1], tostring(now)}
