-- Sliding log as people write it today: a sorted set of grant times with a
-- unique member per grant, trimmed on every call, with a TTL of one window.
-- KEYS[1] = log key; ARGV = limit, window (milliseconds), cost.
-- Reply: {allowed, limit, remaining, retry_after_ms, reset_after_ms}, like RL.SLIDING EXACT.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count + cost <= limit then
  -- Unique member: the server's microsecond time (no two calls share it)
  -- plus the unit's index.
  for i = 1, cost do
    redis.call('ZADD', key, now, string.format('%s%06d-%d', t[1], tonumber(t[2]), i))
  end
  redis.call('PEXPIRE', key, window)
  return {1, limit, limit - count - cost, 0, window}
end
local retry = -1
if cost <= limit then
  local oldest = redis.call('ZRANGE', key, count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
  retry = tonumber(oldest[2]) + window - now
end
return {0, limit, math.max(0, limit - count), retry, window}
