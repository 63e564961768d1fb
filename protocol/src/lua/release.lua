-- Give back a lease without applying (on shutdown): delete the lock
-- only if it still holds our token, so an expired lease now held by another is left alone.
-- KEYS: 1 lock; ARGV: 1 token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
