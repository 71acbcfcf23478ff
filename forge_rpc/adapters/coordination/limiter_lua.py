"""The two Lua scripts of the shared limiter. Redis runs a script atomically, so every replica's reservation
checks and applies all its counters as one step: a limit of N admits exactly N, whichever replicas the calls
reach. Time is Redis' own (`TIME`), so replicas with skewed clocks still share one bucket and one period.

The arithmetic is `domain.limits`' (see there): bucket levels are integers scaled by the 60 s window, written
with `%.0f` because Redis would otherwise format large Lua numbers in exponent notation. The reserve script
touches keys it builds from KEYS (a budget period's suffix): fine on one Redis or a replicated one, not on Redis
Cluster. Which budget period a call counts in is the replica's clock's choice (calendar months are easier in
Python than in Lua); clock skew matters only in the instant a period ends.
"""

from __future__ import annotations

__all__ = ["RESERVE", "SETTLE"]

# KEYS[i]: the counter of check i (a budget key without its period suffix).
# ARGV: member (reservation id), stream lease ms, budget period suffix, the period's end (ms), then per check:
# kind ('b' bucket, 's' streams, 'q' per-period quota), limit, amount.
# Returns {1, 0, now, 0, remaining1, reset1, ...} or {0, i, now, retry_ms, remaining, reset} for the first check
# that does not fit (retry_ms -1: the amount alone exceeds the limit).
RESERVE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local suffix = ':' .. ARGV[3]
local pend = tonumber(ARGV[4])
local levels = {}
for i = 1, #KEYS do
  local kind = ARGV[2 + 3 * i]
  local limit = tonumber(ARGV[3 + 3 * i])
  local amount = tonumber(ARGV[4 + 3 * i])
  local key = KEYS[i]
  if kind == 'b' then
    local s = redis.call('HMGET', key, 'l', 't')
    local level = tonumber(s[1]) or 0
    local last = tonumber(s[2]) or now
    local elapsed = now - last
    if elapsed < 0 then elapsed = 0 end
    level = level - elapsed * limit
    if level < 0 then level = 0 end
    local after = level + amount * W
    if after > limit * W then
      local retry = -1
      if amount <= limit then retry = math.ceil((after - limit * W) / limit) end
      local remaining = math.floor((limit * W - level) / W)
      if remaining < 0 then remaining = 0 end
      return {0, i, now, retry, remaining, math.ceil(level / limit)}
    end
    levels[i] = after
  elseif kind == 's' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local held = redis.call('ZCARD', key)
    if held + 1 > limit then return {0, i, now, 1000, 0, 0} end
    levels[i] = held + 1
  else
    local used = tonumber(redis.call('GET', key .. suffix) or '0')
    if used + amount > limit then
      local retry = pend - now
      if amount > limit then retry = -1 end
      local remaining = limit - used
      if remaining < 0 then remaining = 0 end
      return {0, i, now, retry, remaining, pend - now}
    end
    levels[i] = used + amount
  end
end
local out = {1, 0, now, 0}
for i = 1, #KEYS do
  local kind = ARGV[2 + 3 * i]
  local limit = tonumber(ARGV[3 + 3 * i])
  local key = KEYS[i]
  local level = levels[i]
  if kind == 'b' then
    local reset = math.ceil(level / limit)
    redis.call('HSET', key, 'l', string.format('%.0f', level), 't', string.format('%.0f', now))
    redis.call('PEXPIRE', key, reset + 1000)
    out[#out + 1] = math.floor((limit * W - level) / W)
    out[#out + 1] = reset
  elseif kind == 's' then
    redis.call('ZADD', key, string.format('%.0f', now + lease), member)
    redis.call('PEXPIRE', key, lease)
    out[#out + 1] = limit - level
    out[#out + 1] = 0
  else
    redis.call('INCRBY', key .. suffix, ARGV[4 + 3 * i])
    redis.call('PEXPIREAT', key .. suffix, string.format('%.0f', pend + W))
    out[#out + 1] = limit - level
    out[#out + 1] = pend - now
  end
end
return out
"""

# KEYS[i]: the counter of check i (a budget key with the reservation's period suffix).
# ARGV: member, then per check: kind, limit, delta (used − reserved; ignored for streams), expire-at ms (quotas).
SETTLE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local member = ARGV[1]
for i = 1, #KEYS do
  local kind = ARGV[4 * i - 2]
  local limit = tonumber(ARGV[4 * i - 1])
  local delta = tonumber(ARGV[4 * i])
  local key = KEYS[i]
  if kind == 's' then
    redis.call('ZREM', key, member)
  elseif delta ~= 0 then
    if kind == 'b' then
      local s = redis.call('HMGET', key, 'l', 't')
      local level = tonumber(s[1]) or 0
      local last = tonumber(s[2]) or now
      local elapsed = now - last
      if elapsed < 0 then elapsed = 0 end
      level = level - elapsed * limit
      if level < 0 then level = 0 end
      level = level + delta * W
      if level < 0 then level = 0 end
      redis.call('HSET', key, 'l', string.format('%.0f', level), 't', string.format('%.0f', now))
      redis.call('PEXPIRE', key, math.ceil(level / limit) + 1000)
    elseif redis.call('EXISTS', key) == 1 then
      -- A period that has ended (its key expired) is not charged after the fact.
      local value = redis.call('INCRBY', key, ARGV[4 * i])
      if value < 0 then redis.call('SET', key, '0', 'KEEPTTL') end
      if redis.call('PTTL', key) < 0 then redis.call('PEXPIREAT', key, ARGV[4 * i + 1]) end
    end
  end
end
return 1
"""
