"""The Lua scripts the Redis backend (``_redis``) runs: every operation that must be atomic
over one model's keys (one hash tag, so one slot on a cluster). The write-intent parts are
in ``_intent_scripts``."""

from __future__ import annotations

from ._intent_scripts import BEGIN_WRITE, END_WRITE, OPEN_FOR_FILLS

__all__ = ["SCRIPTS"]

# Compare-and-set; a missing generation (GET gives false) matches nothing, so nothing is
# filled before bump() has created the generation from the clock. The generation is compared
# as a string: INCR keeps it canonical, and a
# string compare cannot lose precision the way Lua's doubles would past 2**53.
# Refused too while a write intent stands (_intent_scripts). KEYS: generation, entry, intents.
_FILL = (
    OPEN_FOR_FILLS
    + """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] or not open_for_fills() then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""
)

# Compare-and-delete: a lease that expired and was taken by someone else must survive.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# ZINCRBY each member, HSET each spec, then trim to ARGV[1] members keeping the same ones
# MemoryBackend keeps: highest score first, ties to the lexicographically smaller member.
# ZREMRANGEBYRANK alone would break ties the other way (rank order among equal scores is
# ascending, so it would drop the smaller members). Scores stay strings as Redis formats them
# (%.17g, exact), so the range bounds below hit the edge score exactly.
# ARGV: max_tracked, number of count pairs, member/count pairs, field/value pairs.
_INCR_USAGE = """
local max_tracked = tonumber(ARGV[1])
local pairs_end = 3 + 2 * tonumber(ARGV[2])
for i = 3, pairs_end - 1, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
for i = pairs_end, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if redis.call('ZCARD', KEYS[1]) <= max_tracked then
  return 0
end
local doomed
if max_tracked <= 0 then
  doomed = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  local edge = redis.call('ZREVRANGE', KEYS[1], max_tracked - 1, max_tracked - 1, 'WITHSCORES')[2]
  local above = redis.call('ZCOUNT', KEYS[1], '(' .. edge, '+inf')
  doomed = redis.call('ZRANGEBYSCORE', KEYS[1], edge, edge, 'LIMIT', max_tracked - above, -1)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. edge)) do
    doomed[#doomed + 1] = member
  end
end
for _, member in ipairs(doomed) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
return #doomed
"""

# The top ARGV[1] members scoring >= ARGV[2], with their specs, in MemoryBackend's order.
# ZREVRANGEBYSCORE orders equal scores by descending member, so when the limit cuts through a
# run of equal scores the run is fetched again in ascending order (ZRANGEBYSCORE) to pick the
# same members; the caller sorts. Returns {members, scores, specs}.
_TOP_USAGE = """
local limit = tonumber(ARGV[1])
local top = redis.call(
  'ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, limit)
local edge = false
if #top == 2 * limit then
  edge = top[#top]
end
local members, scores, specs = {}, {}, {}
for i = 1, #top, 2 do
  if top[i + 1] ~= edge then
    members[#members + 1] = top[i]
    scores[#scores + 1] = top[i + 1]
  end
end
if edge then
  local ties = redis.call('ZRANGEBYSCORE', KEYS[1], edge, edge, 'LIMIT', 0, limit - #members)
  for _, member in ipairs(ties) do
    members[#members + 1] = member
    scores[#scores + 1] = edge
  end
end
for i, member in ipairs(members) do
  specs[i] = redis.call('HGET', KEYS[2], member)
end
return {members, scores, specs}
"""

# _FILL, then _RELEASE of the lease. KEYS: generation, entry, lease, intents.
# ARGV: generation, stored value, ttl ms, token.
_FILL_AND_RELEASE = (
    OPEN_FOR_FILLS
    + """
local current = redis.call('GET', KEYS[1])
local stored = 0
if current == ARGV[1] and open_for_fills() then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return stored
"""
)

# Generations never go backwards or repeat. A new one is the largest of: the stored one + 1,
# the server's clock in microseconds, and the highest this client has seen + 1 (ARGV[1]). So
# after Redis lost data (restart without persistence, FLUSHALL) or brought back an older
# counter (a restart from an old snapshot or AOF, a failover that lost writes), the next
# number is above every number handed out before: the clock has moved past them, and a
# client that saw a lost number pushes past it itself. The server's run_id (new at every
# start) is stored next to the generation (KEYS[2]): a generation that was not moved under
# the running server may come from a restored dataset, and readers do not trust it (see
# RedisBackend._current). Lua numbers are doubles: exact up to 2**53, far above the clock.
_BUMP = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local now = redis.call('TIME')
local generation = tonumber(now[1]) * 1000000 + tonumber(now[2])
if current + 1 > generation then
  generation = current + 1
end
local floor = tonumber(ARGV[1]) or 0
if floor + 1 > generation then
  generation = floor + 1
end
local text = string.format('%d', generation)
redis.call('SET', KEYS[1], text)
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
redis.call('SET', KEYS[2], server)
return {text, server}
"""

SCRIPTS = {
    "fill_and_release": _FILL_AND_RELEASE,
    "bump": _BUMP,
    "begin_write": BEGIN_WRITE + _BUMP,
    "end_write": END_WRITE + _BUMP,
    "fill": _FILL,
    "release": _RELEASE,
    "incr_usage": _INCR_USAGE,
    "top_usage": _TOP_USAGE,
}
