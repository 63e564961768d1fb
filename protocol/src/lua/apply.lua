-- Apply a batch of order events, each exactly once: one script call serves a whole batch, and
-- each order in it is atomic and idempotent on its own. For each order: if it is already done,
-- report how it ended; otherwise check every line against stock and take all of them or none,
-- then record the outcome, which is also the done marker: the README's "How it works" table
-- (a late replica re-applies after the winner's DEL; read-check-write oversells).
-- The whole script is atomic, so the stock is read once for the batch, kept in a table while
-- the orders are decided one after another, and the total taken per item written at the end:
-- the same result as order-by-order commands, with a handful of commands per batch.
-- A pubsub lease is deliberately left to expire rather than deleted here: deleting it is what let
-- a late replica of the starting design take the order again; until it expires, late replicas
-- skip the order with one failed SET NX, and after that the done marker stops them.
-- Done means final in the record's state machine (record.rs): applied, rejected or
-- dead-lettered. A dead-lettered order is reported as a duplicate and changes nothing, so a late
-- delivery can never apply it behind the operator's back; only a replay (replay.lua) moves it
-- back to accepted.
-- KEYS: 1 inventory (hash), 2 pending (zset), 3 stream, 4 dead-letter stream, 5 refusals (hash),
--       then per order: order record (hash)
-- ARGV: 1 consumer, 2 retention ms, 3 stream group ('' if not from a stream), 4 dead-letter
--       stream maxlen, then per order: event id, stream entry id ('' if none), order id,
--       message JSON, number of items n, then n pairs of item id, quantity (lines already
--       summed per item)
-- Returns three strings per order: outcome ('applied' | 'rejected' | 'duplicate' | 'conflict' |
-- 'error'), then reason and time, or first outcome and consumer, or the event id the orderId
-- belongs to, or the error.

-- The one place that reads KEYS and ARGV (their layout is in the header above, and the
-- builder is `apply_invocation` in redis-io/src/scripts/apply.rs): the batch's shared keys and
-- settings, then one table per order, and every item the batch names, once each.
local inventory, pending, stream, dead_letter, refusals = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local consumer, retention, group, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local orders, names = {}, {}
do
  local seen, a = {}, 5
  for k = 6, #KEYS do
    local order = {record = KEYS[k], id = ARGV[a], entry = ARGV[a + 1], order_id = ARGV[a + 2],
                   message = ARGV[a + 3], lines = {}}
    local n = tonumber(ARGV[a + 4])
    a = a + 5
    for _ = 1, n do
      local item, quantity = ARGV[a], tonumber(ARGV[a + 1])
      order.lines[#order.lines + 1] = {item = item, quantity = quantity}
      if not seen[item] then
        seen[item] = true
        names[#names + 1] = item
      end
      a = a + 2
    end
    orders[#orders + 1] = order
  end
end
local now = now_ms()

-- The batch's shared keys must be of the right type before anything is written: the writes at
-- the end of this script come after every order's record, and must not fail.
local mistyped = wrong_type({[pending] = 'zset', [stream] = 'stream', [dead_letter] = 'stream',
                             [refusals] = 'hash'})
if mistyped then
  return mistyped
end

-- In slices: Lua's unpack is limited to a few thousand values.
local function each_slice(list, f)
  for i = 1, #list, 512 do
    f(unpack(list, i, math.min(i + 511, #list)))
  end
end

-- Stock of every item named: a whole number, or absent (none). A broken inventory (a key of
-- the wrong type, a value that is not a whole number) fails the orders that need it, and
-- changes nothing.
local stock, taken, stock_error = {}, {}, nil
local values = {}
local read_ok, read_error = pcall(each_slice, names, function(...)
  for _, v in ipairs(redis.call('HMGET', inventory, ...)) do
    values[#values + 1] = v
  end
end)
if not read_ok then
  stock_error = type(read_error) == 'table' and read_error.err or tostring(read_error)
end
for i, name in ipairs(names) do
  local v = values[i]
  -- Exactly what HINCRBY accepts (no leading zeros, no '-0'), and at most 18 digits so it
  -- stays a 64-bit integer: the HINCRBY at the end of this script must not fail.
  local whole = v == '0' or (string.match(v or '', '^%-?[1-9]%d*$') and #v <= 18)
  if v and not whole then
    stock[name] = 'stock of item ' .. name .. ' is not a whole number Redis can decrement: ' .. v
  else
    stock[name] = tonumber(v or '0')
  end
end

local settled_entries, done_ids, conflicts = {}, {}, {}

local function apply(order)
  local record, id, entry, order_id = order.record, order.id, order.entry, order.order_id
  local rec = redis.call('HMGET', record, 'status', 'consumer', 'id')
  local status = rec[1]
  -- The orderId belongs to another event (a starting-design publisher reusing it): this one is
  -- not that order, and applying its items under that record would replace the order the
  -- client was promised. The consumer refuses it as invalid (and dead-letters it in streams).
  if rec[3] and rec[3] ~= id then
    if entry ~= '' then
      conflicts[#conflicts + 1] = {entry, order.message, 'orderId ' .. order_id .. ' already belongs to event ' .. rec[3]}
      settled_entries[#settled_entries + 1] = entry
    end
    return 'conflict', rec[3], ''
  end
  if status == 'applied' or status == 'rejected' or status == 'dead-lettered' then
    done_ids[#done_ids + 1] = order_id
    settled_entries[#settled_entries + 1] = entry
    return 'duplicate', status, rec[2] or ''
  end
  if stock_error then
    error(stock_error, 0)
  end
  local shortage = false
  for _, line in ipairs(order.lines) do
    local have, want = stock[line.item], line.quantity
    if type(have) == 'string' then
      error(have, 0)
    end
    if not shortage and have < want then
      shortage = 'insufficient stock for item ' .. line.item .. ': ordered ' .. want .. ', in stock ' .. have
    end
  end
  local new_status = shortage and 'rejected' or 'applied'
  if rec[3] and not shortage then
    redis.call('HSET', record, 'status', new_status, 'consumer', consumer, 'doneAt', now)
  else
    local fields = {'status', new_status, 'consumer', consumer, 'doneAt', now}
    if shortage then
      fields[#fields + 1] = 'reason'
      fields[#fields + 1] = shortage
    end
    -- An order from a starting-design publisher has no record yet: keep its message so
    -- readers find it like any other.
    if not rec[3] then
      for _, v in ipairs({'id', id, 'message', order.message, 'acceptedAt', now}) do
        fields[#fields + 1] = v
      end
    end
    redis.call('HSET', record, unpack(fields))
  end
  redis.call('PEXPIRE', record, retention)
  -- Only now that the record is written does the order count against the stock.
  if not shortage then
    for _, line in ipairs(order.lines) do
      stock[line.item] = stock[line.item] - line.quantity
      taken[line.item] = (taken[line.item] or 0) + line.quantity
    end
  end
  done_ids[#done_ids + 1] = order_id
  settled_entries[#settled_entries + 1] = entry
  return new_status, shortage or '', now
end

local out = {}
for _, order in ipairs(orders) do
  -- One order's error (a key of the wrong type) must not stop the orders behind it.
  local ok, outcome, detail, more = pcall(apply, order)
  if not ok then
    -- redis.call raises a table {err = ...}; error() and Lua faults raise a string.
    outcome, detail, more = 'error', type(outcome) == 'table' and outcome.err or tostring(outcome), ''
  end
  out[#out + 1] = outcome
  out[#out + 1] = detail
  out[#out + 1] = more
end

-- The batch's writes that are not per order. None of them can fail now: the inventory is a
-- hash (it was read as one), every value taken from was a whole number, and the other keys'
-- types were checked first.
for item, n in pairs(taken) do
  redis.call('HINCRBY', inventory, item, -n)
end
-- Dead letters before acknowledgements: if this failed, the entries would stay pending.
for _, c in ipairs(conflicts) do
  add_dead_letter(dead_letter, maxlen, c[1], c[2], c[3], consumer, '')
end
if group ~= '' then
  local entries = {}
  for _, e in ipairs(settled_entries) do
    if e ~= '' then entries[#entries + 1] = e end
  end
  each_slice(entries, function(...)
    redis.call('XACK', stream, group, ...)
    redis.call('XDEL', stream, ...)
  end)
else
  -- Done orders leave the pending index, and their pubsub refusal counts (refused.lua) go.
  each_slice(done_ids, function(...)
    redis.call('ZREM', pending, ...)
    redis.call('HDEL', refusals, ...)
  end)
end
return out
