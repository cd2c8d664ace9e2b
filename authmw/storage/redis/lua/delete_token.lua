-- KEYS: token, marker | ARGV: tid, now, refopen, useropen, tokens suffix
local cur = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if not cur then return false end
local rid = field(cur, 'refresh_id')
if rid then ref_del(ARGV[3] .. rid .. '}', ARGV[1]) end
local uid = field(cur, 'user_id')
if uid then idx_rem(ARGV[4] .. uid .. ARGV[5], ARGV[1], ARGV[2]) end
return cur
