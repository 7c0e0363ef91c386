-- Token bucket as people write it today: a hash {tokens, ts} with a TTL.
-- KEYS[1] = bucket key; ARGV = capacity, rate (tokens/s, decimals allowed), cost.
-- Reply: {allowed, capacity, remaining, retry_after_ms, reset_after_ms}, like RL.TOKENBUCKET.
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local b = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 1000)
  ts = now
end

local allowed = 0
local retry = 0
if cost <= tokens then
  tokens = tokens - cost
  allowed = 1
elseif cost > capacity then
  retry = -1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end

local reset = math.ceil((capacity - tokens) * 1000 / rate)
if reset < 1 then reset = 1 end
redis.call('HSET', key, 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', key, reset)
return {allowed, capacity, math.floor(tokens), retry, reset}
