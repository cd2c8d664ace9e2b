-- KEYS: token, marker | ARGV: user id ('' for any) -> the deleted record, or nil
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if ARGV[1] ~= '' and field(cur, 'user_id') ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return cur
