-- KEYS: token | ARGV: the user keys' opening (`auth:user:{`)
-- The token record and its owner's record in one round trip (verify follows the account).
-- Single server only: the user key is built here, in another slot than the token's.
local raw = redis.call('GET', KEYS[1])
if not raw then return {} end
local owner = field(raw, 'user_id')
if not owner then return {raw} end
return {raw, redis.call('GET', ARGV[1] .. owner .. '}')}
