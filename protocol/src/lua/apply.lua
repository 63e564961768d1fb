-- Apply a batch of order events, each exactly once: one script call serves a whole batch, and
-- each order in it is atomic and idempotent on its own. For each order: if the event is already
-- done, report how it ended; otherwise check every line against stock and take all of them or
-- none, then record the outcome and the done marker (holes 1 and 6).
-- A pubsub lease is deliberately left to expire rather than deleted here: deleting it is what let
-- a late replica of the starting design take the order again; until it expires, late replicas
-- skip the order with one failed SET NX, and after that the done marker stops them.
-- KEYS: 1 inventory (hash), 2 pending (zset), 3 stream, then per order: order record (hash),
--       order-id index (hash)
-- ARGV: 1 consumer, 2 retention ms, 3 stream group ('' if not from a stream), then per order:
--       event id, stream entry id ('' if none), order id, message JSON, number of items n,
--       then n pairs of item id, quantity (lines already summed per item)
-- Returns three strings per order: outcome ('applied' | 'rejected' | 'duplicate' | 'error'),
-- then reason and time, or first outcome and consumer, or the error.

local inventory, pending, stream = KEYS[1], KEYS[2], KEYS[3]
local consumer, retention, group = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))

local function settle(entry)
  if group ~= '' and entry ~= '' then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
  end
end

-- Every read that could fail (a key of the wrong type) comes before the first write, so an
-- order that errors has changed nothing.
local function apply(record, index, id, entry, order_id, message, first, last)
  local done = redis.call('HMGET', record, 'status', 'consumer')
  if done[1] == 'applied' or done[1] == 'rejected' then
    settle(entry)
    return {'duplicate', done[1], done[2] or ''}
  end
  local shortage = false
  for i = first, last, 2 do
    local have = tonumber(redis.call('HGET', inventory, ARGV[i]) or '0') or 0
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
    for i = first, last, 2 do
      redis.call('HINCRBY', inventory, ARGV[i], -tonumber(ARGV[i + 1]))
    end
  end
  redis.call('HSET', record, 'status', outcome, 'consumer', consumer, 'doneAt', now, 'orderId', order_id)
  if shortage then
    redis.call('HSET', record, 'reason', shortage)
  end
  -- An order from a starting-design publisher has no record yet: keep its message, and index
  -- its orderId, so readers find it like any other.
  if redis.call('HSETNX', record, 'message', message) == 1 then
    redis.call('HSETNX', index, 'id', id)
    redis.call('PEXPIRE', index, retention)
  end
  redis.call('PEXPIRE', record, retention)
  redis.call('ZREM', pending, id)
  settle(entry)
  return {outcome, shortage or '', now}
end

local out = {}
local a = 4
for k = 4, #KEYS, 2 do
  local id, entry, order_id, message = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local first = a + 5
  local last = a + 4 + 2 * tonumber(ARGV[a + 4])
  a = last + 1
  -- One order's error (a key of the wrong type) must not stop the orders behind it.
  local ok, result = pcall(apply, KEYS[k], KEYS[k + 1], id, entry, order_id, message, first, last)
  if not ok then
    -- redis.call raises a table {err = ...}; a Lua fault raises a string.
    local reason = type(result) == 'table' and result.err or tostring(result)
    result = {'error', reason, ''}
  end
  for _, v in ipairs(result) do
    out[#out + 1] = v
  end
end
return out
