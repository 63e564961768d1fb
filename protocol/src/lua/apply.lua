-- Apply one order event exactly once. If the event is already done, report how it ended;
-- otherwise check every line against stock and take all of them or none, then record the
-- outcome and the done marker, in the same atomic step (holes 1 and 6).
-- KEYS: 1 order record (hash), 2 inventory (hash), 3 pending (zset), 4 lock, 5 stream,
--       6 order-id index (hash)
-- ARGV: 1 event id, 2 consumer, 3 retention ms, 4 lock token ('' if none),
--       5 stream group ('' if not from a stream), 6 stream entry id, 7 order id, 8 message JSON,
--       9.. item id, quantity pairs (one pair per item, lines already summed)
local function finish()
  -- Compare-and-delete: a lease that expired and was taken by another consumer is not ours.
  if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[4] then
    redis.call('DEL', KEYS[4])
  end
  if ARGV[5] ~= '' then
    redis.call('XACK', KEYS[5], ARGV[5], ARGV[6])
    redis.call('XDEL', KEYS[5], ARGV[6])
  end
end

local done = redis.call('HMGET', KEYS[1], 'status', 'consumer')
if done[1] == 'applied' or done[1] == 'rejected' then
  finish()
  return {'duplicate', done[1], done[2] or ''}
end

local shortage = false
for i = 9, #ARGV, 2 do
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
  for i = 9, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[i], -tonumber(ARGV[i + 1]))
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', outcome, 'consumer', ARGV[2], 'doneAt', now, 'orderId', ARGV[7])
if shortage then
  redis.call('HSET', KEYS[1], 'reason', shortage)
end
-- An order from a starting-design publisher has no record yet: keep its message, and index its
-- orderId, so readers find it like any other.
if redis.call('HSETNX', KEYS[1], 'message', ARGV[8]) == 1 then
  redis.call('HSETNX', KEYS[6], 'id', ARGV[1])
  redis.call('PEXPIRE', KEYS[6], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
finish()
return {outcome, shortage or '', tostring(now)}
