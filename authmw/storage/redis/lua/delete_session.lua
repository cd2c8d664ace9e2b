-- KEYS: session | ARGV: sid, now, useropen, sessions suffix -> {uid, expires_at} or nil
local got = redis.call('HMGET', KEYS[1], 'u', 'ex')
if not got[1] then return false end
redis.call('DEL', KEYS[1])
idx_rem(ARGV[3] .. got[1] .. ARGV[4], ARGV[1], ARGV[2])
return got
