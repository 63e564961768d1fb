-- Move a stream entry that cannot be applied to the dead-letter stream, with the reason, and
-- acknowledge it, atomically: it is never both lost and acknowledged, and never blocks the rest.
-- KEYS: 1 stream, 2 dead-letter stream
-- ARGV: 1 group, 2 entry id, 3 payload, 4 reason, 5 consumer, 6 deliveries
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2], 'order', ARGV[3], 'reason', ARGV[4],
  'consumer', ARGV[5], 'deliveries', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
