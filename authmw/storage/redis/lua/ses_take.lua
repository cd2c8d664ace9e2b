-- KEYS: session | ARGV: user id ('' for any) -> {uid, expires_at} or nil
local got = redis.call('HMGET', KEYS[1], 'u', 'ex')
if not got[1] then return false end
if ARGV[1] ~= '' and got[1] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return got
