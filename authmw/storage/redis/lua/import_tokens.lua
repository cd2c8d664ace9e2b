-- KEYS: (token, user index, refresh index) per token
-- ARGV: now, refopen, then (json, tid, exp, rid) per token -> {1|0 per token}
local now, refopen, out = ARGV[1], ARGV[2], {}
for i = 0, #KEYS / 3 - 1 do
  local tkey, uidx, rkey = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local json, tid, exp, rid = ARGV[4 * i + 3], ARGV[4 * i + 4], ARGV[4 * i + 5], ARGV[4 * i + 6]
  local ok = 0
  if num(exp) > num(now) and redis.call('EXISTS', tkey) == 0 then
    local holder = rid ~= '' and redis.call('GET', rkey)
    if not holder or holder == tid then
      tok_store(tkey, uidx, rkey, json, tid, exp, now, rid, refopen)
      ok = 1
    end
  end
  out[i + 1] = ok
end
return out
