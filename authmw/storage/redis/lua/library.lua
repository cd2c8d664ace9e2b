-- The functions shared by the scripts (prepended to each script's source; kv_incr needs none).
-- Times are integer milliseconds since the epoch; `now` comes from the client, the clock its
-- own expiry checks use. Index sorted sets are scored by record expiry, pruned of stale
-- members on every write, and expire with their longest-lived member.
local function num(v) return tonumber(v) end
local function idx_expire(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, top[2]) end
end
local function idx_set(key, member, score, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if num(score) > num(now) then redis.call('ZADD', key, score, member)
  else redis.call('ZREM', key, member) end
  idx_expire(key)
end
local function idx_rem(key, member, now)
  redis.call('ZREM', key, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end
local function field(json, name)
  local v = cjson.decode(json)[name]
  if type(v) == 'string' then return v end
  return nil
end
local function put_string(key, value, exp, now)
  if num(exp) > num(now) then redis.call('SET', key, value, 'PXAT', exp)
  else redis.call('DEL', key) end
end
local function tok_put(key, json, exp, now)
  local old = redis.call('GET', key)
  put_string(key, json, exp, now)
  if old then return field(old, 'refresh_id') or '' end
  return ''
end
local function ref_del(key, token_id)
  if redis.call('GET', key) == token_id then redis.call('DEL', key) end
end
local function tok_store(tkey, uidx, rkey, json, tid, exp, now, rid, refopen)
  idx_set(uidx, tid, exp, now)
  local old = tok_put(tkey, json, exp, now)
  if rid ~= '' then put_string(rkey, tid, exp, now) end
  if old ~= '' and old ~= rid then ref_del(refopen .. old .. '}', tid) end
end
local function ses_put(key, json, la, ex, uid, exp, now)
  if num(exp) > num(now) then
    redis.call('HSET', key, 'd', json, 'la', la, 'ex', ex, 'u', uid)
    redis.call('PEXPIREAT', key, exp)
  else redis.call('DEL', key) end
end
local function ses_touch(key, la, ex, exp, now)
  if num(exp) > num(now) then
    redis.call('HSET', key, 'la', la, 'ex', ex)
    redis.call('PEXPIREAT', key, exp)
  else redis.call('DEL', key) end
end
