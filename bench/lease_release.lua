-- Releases a lease of lease_acquire.lua's semaphore: 1 freed, 0 unknown or
-- expired (like RL.RELEASE).
-- KEYS[1] = semaphore key; ARGV[1] = lease id.
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
return redis.call('ZREM', key, ARGV[1])
