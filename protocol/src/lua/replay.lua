-- Replay one dead letter (the operator fixed the cause): the order's record moves
-- dead-lettered -> accepted (the only way out of dead-lettered, see record.rs) and the order is
-- delivered again as accept.lua delivers it, then the dead letter is deleted, in one atomic
-- step. Idempotent: a record that is no longer dead-lettered (replayed before) only loses the
-- dead letter. A dead letter whose order has no record, or whose record belongs to another
-- event, is kept: replaying it could only apply the wrong order.
-- KEYS: 1 dead-letter stream, 2 stream, 3 pending (zset), 4 refusals (hash), 5 order record
-- ARGV: 1 delivery mode (pubsub|streams), 2 channel, 3 dead letter's entry id, 4 order id,
--       5 event id of the dead letter's payload
-- Returns two strings: 'replayed', '' | 'done', the record's status | 'missing', '' |
--                      'conflict', the event id the orderId belongs to | 'gone', '' (no such
--                      dead letter any more: replayed meanwhile).
local dead_letter, stream, pending, refusals, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local mode, channel, entry, order_id, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local mistyped = wrong_type({[dead_letter] = 'stream', [stream] = 'stream', [pending] = 'zset',
                             [refusals] = 'hash', [record] = 'hash'})
if mistyped then
  return mistyped
end

if #redis.call('XRANGE', dead_letter, entry, entry) == 0 then
  return {'gone', ''}
end
local rec = redis.call('HMGET', record, 'status', 'id', 'message')
local status, owner, message = rec[1], rec[2], rec[3]
if not status or not message then
  return {'missing', ''}
end
if owner ~= id then
  return {'conflict', owner or ''}
end
if status == 'dead-lettered' then
  local now = now_ms()
  -- Accepted again: not done, so it must stay until applied (no expiry), with a fresh count.
  redis.call('HSET', record, 'status', 'accepted')
  redis.call('HDEL', record, 'reason', 'consumer', 'doneAt')
  redis.call('PERSIST', record)
  redis.call('HDEL', refusals, order_id)
  if mode == 'streams' then
    redis.call('XADD', stream, '*', 'order', message)
  else
    redis.call('ZADD', pending, now, order_id)
    redis.call('PUBLISH', channel, message)
  end
  redis.call('XDEL', dead_letter, entry)
  return {'replayed', ''}
end
redis.call('XDEL', dead_letter, entry)
return {'done', status}
