-- KEYS: index | ARGV: member, score, now
-- Never lowers a score, so an index entry always outlives its record even if the write
-- stops half-way. 0: at score, 1: kept a higher score (set it exactly later), 2: added.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
local res = 0
if not cur then
  if num(ARGV[2]) <= num(ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  res = 2
elseif num(cur) > num(ARGV[2]) then res = 1
else redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
idx_expire(KEYS[1])
return res
