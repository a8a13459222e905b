"""The Lua of write intents, for the Redis backend (``_redis``, which runs them).

A write intent is a token in the sorted set ``<generation key>:intents`` (same hash tag as the
generation, so every script stays on one slot), scored by its deadline in milliseconds of the
server's clock. Invariants the scripts keep together:

- While the set holds a token, live or expired, no fill is stored.
- Whoever removes a token moves the generation in the same script: the writer's end
  (``end_write``, after its commit), a later writer's start or end, or the first fill that
  finds the token expired (the writer died; its invalidation is completed by that reader).
  So a reader that read the generation while the intent stood can never fill.
- Starting an intent moves the generation too, so entries filled before it are not served
  after the writer's COMMIT, even if the writer never ends its intent.

The set has no TTL: an expiring key would drop a dead writer's token without the move that
must go with it. It holds at most the tokens of writers in flight plus those of writers that
died since the model's last fill or write.
"""

from __future__ import annotations

__all__ = ["BEGIN_WRITE", "END_WRITE", "OPEN_FOR_FILLS"]

# Server time in ms, and the removal of expired tokens. KEYS[#KEYS]: the intents set.
_EXPIRE = """
local intents = KEYS[#KEYS]
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', intents, '-inf', now_ms)
"""

# Prepended to the fill scripts: ``open_for_fills()`` is true only with no intent at all. A
# fill that finds only expired tokens removes them and moves the generation (the larger of
# the next number and the clock in microseconds, as a bump does) before refusing: the reader
# may have read the database before the dead writer's COMMIT. A model with no generation yet
# is left without one (readers create it by a bump). KEYS[1]: generation; KEYS[#KEYS]: intents.
OPEN_FOR_FILLS = (
    """
local function open_for_fills()
  if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
    return true
  end
"""
    + _EXPIRE.replace("\n", "\n  ")
    + """if expired > 0 then
    local current = redis.call('GET', KEYS[1])
    if current then
      local moved = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
      if tonumber(current) + 1 > moved then
        moved = tonumber(current) + 1
      end
      redis.call('SET', KEYS[1], string.format('%d', moved))
    end
  end
  return false
end
"""
)

# Followed by the bump script (which reads KEYS[1], KEYS[2], ARGV[1] and returns its reply):
# drop expired tokens (the bump completes their writers' invalidations) and add ours.
# ARGV[#ARGV - 1]: token; ARGV[#ARGV]: milliseconds the intent stands.
BEGIN_WRITE = (
    _EXPIRE
    + """
redis.call('ZADD', intents, now_ms + tonumber(ARGV[#ARGV]), ARGV[#ARGV - 1])
"""
)

# Followed by the bump script: remove our token (only ours: another writer's fence stands)
# and the expired ones. ARGV[#ARGV]: token.
END_WRITE = (
    """
redis.call('ZREM', KEYS[#KEYS], ARGV[#ARGV])
"""
    + _EXPIRE
)
