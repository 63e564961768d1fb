-- The one definition of dead-lettering an order, put by scripts/mod.rs in front of every script
-- that does it (apply.lua, dead_letter.lua, refused.lua), after common_lib.lua: what a dead
-- letter carries, how the stream is bounded, and how the order's record says so.

-- Appends a dead letter: the stream entry it came from ('' in pubsub), the payload as it
-- arrived, why, the consumer that gave up, and after how many deliveries ('' if not counted).
-- The stream is capped near `maxlen` entries: beyond it the oldest dead letters are trimmed,
-- while their records keep saying dead-lettered.
local function add_dead_letter(key, maxlen, entry, payload, reason, consumer, deliveries)
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'entry', entry, 'order', payload,
    'reason', reason, 'consumer', consumer, 'deliveries', deliveries)
end

-- The record moves accepted -> dead-lettered (the only way into that status, see record.rs),
-- so `GET /orders/{orderId}` tells the client instead of answering accepted forever. An order
-- with no record yet (from a starting-design publisher) gets one, given its event `id` and
-- `message`: otherwise a late delivery would find no done marker and apply it. A record in any
-- other status is left alone, and so is one Redis cannot read (the wrong type: often why the
-- order is dead-lettered); the dead letter is written all the same.
local function mark_dead_lettered(record, reason, consumer, retention, id, message)
  pcall(function()
    local status = redis.call('HGET', record, 'status')
    local now = now_ms()
    if status == 'accepted' then
      redis.call('HSET', record, 'status', 'dead-lettered', 'reason', reason,
        'consumer', consumer, 'doneAt', now)
    elseif not status and id then
      redis.call('HSET', record, 'id', id, 'message', message, 'acceptedAt', now,
        'status', 'dead-lettered', 'reason', reason, 'consumer', consumer, 'doneAt', now)
    else
      return
    end
    redis.call('PEXPIRE', record, retention)
  end)
end

