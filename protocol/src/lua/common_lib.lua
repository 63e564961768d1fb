-- What the scripts that write orders share, put in front of each by scripts/mod.rs (Redis
-- scripts cannot import one another).

-- Now, in ms, by Redis' clock (the clock every record's times come from).
local function now_ms()
  local t = redis.call('TIME')
  return tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end

-- The error to return before any write when a key of `wanted` (key -> type) exists with another
-- type; nil when each is absent or of its type. A write to such a key failing half-way through
-- a script would leave the writes before it behind.
local function wrong_type(wanted)
  for key, want in pairs(wanted) do
    local have = redis.call('TYPE', key).ok
    if have ~= 'none' and have ~= want then
      return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. have .. ', not a ' .. want)
    end
  end
  return nil
end
