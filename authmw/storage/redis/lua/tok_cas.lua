-- KEYS: token, marker | ARGV: json, exp, now, successor id -> {won, replaced refresh id}
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
if field(cur, 'revoked_at') then
  if redis.call('GET', KEYS[2]) == ARGV[4] then return {1, ''} end
  return {0, ''}
end
put_string(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
put_string(KEYS[2], ARGV[4], ARGV[2], ARGV[3])
return {1, field(cur, 'refresh_id') or ''}
