-- KEYS: (session, user index) per session
-- ARGV: now, then (json, la, ex, uid, sid, exp) per session -> {1|0 per session}
local now, out = ARGV[1], {}
for i = 0, #KEYS / 2 - 1 do
  local skey, uidx = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 6 * i + 1
  local ok = 0
  if num(ARGV[a + 6]) > num(now) and redis.call('EXISTS', skey) == 0 then
    idx_set(uidx, ARGV[a + 5], ARGV[a + 6], now)
    ses_put(skey, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 6], now)
    ok = 1
  end
  out[i + 1] = ok
end
return out
