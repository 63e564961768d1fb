-- Move a stream entry that cannot be applied to the dead-letter stream, with the reason, and
-- acknowledge it, atomically: it is never both lost and acknowledged, and never blocks the rest.
-- When the entry is an order whose record exists and is not done, the record says so too, so
-- `GET /orders/{orderId}` tells the client instead of answering "accepted" forever.
-- KEYS: 1 stream, 2 dead-letter stream, 3 (optional) the order's record
-- ARGV: 1 group, 2 entry id, 3 payload, 4 reason, 5 consumer, 6 deliveries, 7 retention ms
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2], 'order', ARGV[3], 'reason', ARGV[4],
  'consumer', ARGV[5], 'deliveries', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if KEYS[3] then
  -- A record Redis cannot read (the wrong type: often why the entry is here) stays as it is;
  -- the entry is dead-lettered all the same.
  pcall(function()
    local status = redis.call('HGET', KEYS[3], 'status')
    if status == 'accepted' then
      local t = redis.call('TIME')
      local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
      redis.call('HSET', KEYS[3], 'status', 'dead-lettered', 'reason', ARGV[4],
        'consumer', ARGV[5], 'doneAt', now)
      redis.call('PEXPIRE', KEYS[3], ARGV[7])
    end
  end)
end
return 1
