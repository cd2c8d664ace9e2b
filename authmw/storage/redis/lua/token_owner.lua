-- KEYS: token | ARGV: the user keys' opening (`auth:user:{`)
-- The token record and its owner's record in one round trip (verify follows the account).
-- Single server only: the user key is built here, in another slot than the token's. Run
-- without the shared library (defining its functions on every call costs more than this
-- script), and the owner found by a pattern first: the record is our own JSON, whose
-- "user_id" key comes before any free text; an id holding a quote or a backslash (escaped in
-- JSON) does not match the pattern and is decoded with cjson instead.
local raw = redis.call('GET', KEYS[1])
if not raw then return {} end
local owner = string.match(raw, '"user_id":"([^"\\]*)"')
if not owner then
  owner = cjson.decode(raw)['user_id']
  if type(owner) ~= 'string' then return {raw} end
end
return {raw, redis.call('GET', ARGV[1] .. owner .. '}')}
