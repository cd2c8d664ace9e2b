-- KEYS: user index | ARGV: uid, now, tokopen, refopen, batch -> {live deleted, remaining}
local items = redis.call('ZRANGE', KEYS[1], 0, num(ARGV[5]) - 1, 'WITHSCORES')
local live = 0
for i = 1, #items, 2 do
  local tid = items[i]
  local tkey = ARGV[3] .. tid .. '}'
  local cur = redis.call('GET', tkey)
  if cur and field(cur, 'user_id') == ARGV[1] then
    redis.call('DEL', tkey, tkey .. ':next')
    local rid = field(cur, 'refresh_id')
    if rid then ref_del(ARGV[4] .. rid .. '}', tid) end
    if num(items[i + 1]) > num(ARGV[2]) then live = live + 1 end
  end
  redis.call('ZREM', KEYS[1], tid)
end
return {live, redis.call('ZCARD', KEYS[1])}
