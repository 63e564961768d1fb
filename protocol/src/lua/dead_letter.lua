-- Streams: move an entry that cannot be applied to the dead-letter stream, with the reason, and
-- acknowledge it, atomically: it is never both lost and acknowledged, and never blocks the rest.
-- When the entry is an order whose record is still accepted, the record says dead-lettered;
-- when it has no record yet (a starting-design publisher's), it gets a dead-lettered one.
-- KEYS: 1 stream, 2 dead-letter stream, 3 (optional) the order's record
-- ARGV: 1 group, 2 entry id, 3 payload, 4 reason, 5 consumer, 6 deliveries, 7 retention ms,
--       8 dead-letter stream maxlen, 9 (with KEYS[3]) the order's event id
local stream, dead_letter, record = KEYS[1], KEYS[2], KEYS[3]
local group, entry, payload, reason, consumer, deliveries, retention, maxlen =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
add_dead_letter(dead_letter, maxlen, entry, payload, reason, consumer, deliveries)
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if record then
  mark_dead_lettered(record, reason, consumer, retention, ARGV[9], payload)
end
return 1
