-- Fixed window as people write it today: INCR (INCRBY for cost) + EXPIRE on
-- the first hit of the window.
-- KEYS[1] = counter key; ARGV = limit, window (seconds), cost.
-- Reply: {allowed, limit, remaining, retry_after_ms, reset_after_ms}, like RL.FIXEDWINDOW.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local current = redis.call('INCRBY', key, cost)
if current == cost then
  redis.call('EXPIRE', key, window)
end
local ttl = redis.call('PTTL', key)
if current > limit then
  -- Over the limit: give the units back so the count stays meaningful.
  redis.call('DECRBY', key, cost)
  return {0, limit, math.max(0, limit - current + cost), ttl, ttl}
end
return {1, limit, limit - current, 0, ttl}
