-- A concurrency semaphore as people write it today: a sorted set with one
-- member per lease, scored by its expiry (ms), trimmed on every call, the
-- key expiring with its last lease. One slot per lease.
-- KEYS[1] = semaphore key; ARGV = limit, ttl (milliseconds), lease id.
-- Reply: {allowed, limit, remaining, retry_after_ms, reset_after_ms, id,
-- expires_at_ms}, like RL.ACQUIRE (id false when denied).
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local id = ARGV[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZCARD', key)
if held < limit then
  local expires = now + ttl
  redis.call('ZADD', key, expires, id)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, tonumber(last[2]))
  return {1, limit, limit - held - 1, 0, tonumber(last[2]) - now, id, expires}
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
return {0, limit, 0, tonumber(first[2]) - now, tonumber(last[2]) - now, false, 0}
