-- KEYS: user index | ARGV: uid, now, sesopen, batch -> {live deleted, remaining}
local items = redis.call('ZRANGE', KEYS[1], 0, num(ARGV[4]) - 1, 'WITHSCORES')
local live = 0
for i = 1, #items, 2 do
  local skey = ARGV[3] .. items[i] .. '}'
  if redis.call('HGET', skey, 'u') == ARGV[1] then
    redis.call('DEL', skey)
    if num(items[i + 1]) > num(ARGV[2]) then live = live + 1 end
  end
  redis.call('ZREM', KEYS[1], items[i])
end
return {live, redis.call('ZCARD', KEYS[1])}
