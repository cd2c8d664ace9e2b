-- KEYS: session | ARGV: the user keys' opening (`auth:user:{`)
-- HMGET d la ex of the session and its owner's record in one round trip. An anonymous
-- session's owner field is empty: no user is read.
local got = redis.call('HMGET', KEYS[1], 'd', 'la', 'ex', 'u')
local owner = got[4]
local user = false
if owner and owner ~= '' then user = redis.call('GET', ARGV[1] .. owner .. '}') end
return {got[1], got[2], got[3], user}
