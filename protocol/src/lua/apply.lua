-- Apply one order event exactly once. If the event is already done, report how it ended;
-- otherwise check every line against stock and take all of them or none, then record the
-- outcome and the done marker, in the same atomic step (holes 1 and 6).
-- A pubsub lease is deliberately left to expire rather than deleted here: deleting it is what
-- let a late replica of the starting design take the order again; until it expires, late
-- replicas skip the order with one failed SET NX, and after that the done marker stops them.
-- KEYS: 1 order record (hash), 2 inventory (hash), 3 pending (zset), 4 stream,
--       5 order-id index (hash)
-- ARGV: 1 event id, 2 consumer, 3 retention ms, 4 stream group ('' if not from a stream),
--       5 stream entry id, 6 order id, 7 message JSON,
--       8.. item id, quantity pairs (one pair per item, lines already summed)
local function settle()
  if ARGV[4] ~= '' then
    redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
    redis.call('XDEL', KEYS[4], ARGV[5])
  end
end

local done = redis.call('HMGET', KEYS[1], 'status', 'consumer')
if done[1] == 'applied' or done[1] == 'rejected' then
  settle()
  return {'duplicate', done[1], done[2] or ''}
end

local shortage = false
for i = 8, #ARGV, 2 do
  local have = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') or 0
  local want = tonumber(ARGV[i + 1])
  if have < want then
    shortage = 'insufficient stock for item ' .. ARGV[i] .. ': ordered ' .. want .. ', in stock ' .. have
    break
  end
end

local outcome = 'applied'
if shortage then
  outcome = 'rejected'
else
  for i = 8, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[i], -tonumber(ARGV[i + 1]))
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', outcome, 'consumer', ARGV[2], 'doneAt', now, 'orderId', ARGV[6])
if shortage then
  redis.call('HSET', KEYS[1], 'reason', shortage)
end
-- An order from a starting-design publisher has no record yet: keep its message, and index its
-- orderId, so readers find it like any other.
if redis.call('HSETNX', KEYS[1], 'message', ARGV[7]) == 1 then
  redis.call('HSETNX', KEYS[5], 'id', ARGV[1])
  redis.call('PEXPIRE', KEYS[5], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
settle()
return {outcome, shortage or '', tostring(now)}
