-- KEYS: old token, old marker, old user index, old refresh, new token, new user index,
--       new refresh, family mark | ARGV: old json, old tid, old exp, old rid, new json,
--       new tid, new exp, new rid, now, refopen
-- A revoked family is refused before anything is written: revoke_token_family sets the mark
-- first, so a rotation either ran wholly before it (and is revoked there) or not at all.
if redis.call('EXISTS', KEYS[8]) == 1 then return 0 end
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if field(cur, 'revoked_at') then
  -- a replay of our own rotation (the reply was lost) still counts as the win
  if redis.call('GET', KEYS[2]) == ARGV[6] then return 1 end
  return 0
end
tok_store(KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[9], ARGV[4], ARGV[10])
put_string(KEYS[2], ARGV[6], ARGV[3], ARGV[9])
tok_store(KEYS[5], KEYS[6], KEYS[7], ARGV[5], ARGV[6], ARGV[7], ARGV[9], ARGV[8], ARGV[10])
return 1
