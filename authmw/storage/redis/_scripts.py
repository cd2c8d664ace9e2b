"""Lua scripts of the Redis backend.

One library of small Lua functions is shared by two families of scripts:

* ``ATOMIC``: one script per multi-key write, used on a single server (plain or behind
  sentinels). A script runs atomically, so each write is all-or-nothing. These scripts build
  some key names from the prefixes they are given (the old refresh index, a user's index),
  which a single server allows and a cluster does not.
* ``SLOT``: scripts that touch one hash slot each, used in cluster mode, where the caller runs
  them in a fixed order chosen so that a write interrupted half-way never grants access (see
  ``docs/redis.md``).

Times are integer milliseconds since the epoch; ``now`` comes from the client, the same clock
the client-side expiry checks use. Index sorted sets are scored by record expiry, pruned of
stale members on every write, and expire with their longest-lived member.
"""

from __future__ import annotations

__all__ = ["ATOMIC", "KV_INCR", "SLOT"]

_LIBRARY = r"""
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
"""

# -- single server: one atomic script per write ----------------------------------------------

_STORE_TOKEN = r"""
-- KEYS: token, user index, refresh index | ARGV: json, tid, exp, now, rid, refopen, mode
if ARGV[7] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
tok_store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""

_ROTATE_TOKEN = r"""
-- KEYS: old token, old marker, old user index, old refresh, new token, new user index,
--       new refresh | ARGV: old json, old tid, old exp, old rid, new json, new tid,
--       new exp, new rid, now, refopen
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
"""

_DELETE_TOKEN = r"""
-- KEYS: token, marker | ARGV: tid, now, refopen, useropen, tokens suffix
local cur = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if not cur then return false end
local rid = field(cur, 'refresh_id')
if rid then ref_del(ARGV[3] .. rid .. '}', ARGV[1]) end
local uid = field(cur, 'user_id')
if uid then idx_rem(ARGV[4] .. uid .. ARGV[5], ARGV[1], ARGV[2]) end
return cur
"""

_DELETE_USER_TOKENS = r"""
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
"""

_STORE_SESSION = r"""
-- KEYS: session, user index | ARGV: json, la, ex, uid, sid, exp, now
idx_set(KEYS[2], ARGV[5], ARGV[6], ARGV[7])
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[7])
return 1
"""

_TOUCH_SESSION = r"""
-- KEYS: session | ARGV: la, ex, exp, now, sid, useropen, sessions suffix
local uid = redis.call('HGET', KEYS[1], 'u')
if not uid then return 0 end
idx_set(ARGV[6] .. uid .. ARGV[7], ARGV[5], ARGV[3], ARGV[4])
ses_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""

_DELETE_SESSION = r"""
-- KEYS: session | ARGV: sid, now, useropen, sessions suffix -> {uid, expires_at} or nil
local got = redis.call('HMGET', KEYS[1], 'u', 'ex')
if not got[1] then return false end
redis.call('DEL', KEYS[1])
idx_rem(ARGV[3] .. got[1] .. ARGV[4], ARGV[1], ARGV[2])
return got
"""

_DELETE_USER_SESSIONS = r"""
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
"""

# -- cluster: one hash slot per script --------------------------------------------------------

_IDX_RAISE = r"""
-- KEYS: index | ARGV: member, score, now
-- Never lowers a score, so an index entry always outlives its record even if the write
-- stops half-way. 0: at score, 1: kept a higher score (set it exactly later), 2: added.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
local res = 0
if not cur then
  if num(ARGV[2]) <= num(ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  res = 2
elseif num(cur) > num(ARGV[2]) then res = 1
else redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
idx_expire(KEYS[1])
return res
"""

_IDX_SET = r"""
-- KEYS: index | ARGV: member, score, now
idx_set(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""

_IDX_REM = r"""
-- KEYS: index | ARGV: now, members...
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return 1
"""

_TOK_PUT = r"""
-- KEYS: token | ARGV: json, exp, now, mode -> {written, replaced refresh id}
if ARGV[4] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
return {1, tok_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3])}
"""

_TOK_CAS = r"""
-- KEYS: token, marker | ARGV: json, exp, now, successor id -> {won, replaced refresh id}
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
if field(cur, 'revoked_at') then
  if redis.call('GET', KEYS[2]) == ARGV[4] then return {1, ''} end
  return {0, ''}
end
put_string(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
put_string(KEYS[2], ARGV[4], ARGV[2], ARGV[3])
return {1, field(cur, 'refresh_id') or ''}
"""

_TOK_TAKE = r"""
-- KEYS: token, marker | ARGV: user id ('' for any) -> the deleted record, or nil
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if ARGV[1] ~= '' and field(cur, 'user_id') ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return cur
"""

_REF_SET = r"""
-- KEYS: refresh index | ARGV: tid, exp, now
put_string(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""

_REF_DEL = r"""
-- KEYS: refresh index | ARGV: tid
ref_del(KEYS[1], ARGV[1])
return 1
"""

_SES_PUT = r"""
-- KEYS: session | ARGV: json, la, ex, uid, exp, now
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""

_SES_TOUCH = r"""
-- KEYS: session | ARGV: la, ex, exp, now
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
ses_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""

_SES_TAKE = r"""
-- KEYS: session | ARGV: user id ('' for any) -> {uid, expires_at} or nil
local got = redis.call('HMGET', KEYS[1], 'u', 'ex')
if not got[1] then return false end
if ARGV[1] ~= '' and got[1] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return got
"""

KV_INCR = r"""
-- KEYS: counter | ARGV: window ms. The first increment of a window sets its expiry.
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _with_library(body: str) -> str:
    return _LIBRARY + body


ATOMIC: dict[str, str] = {
    name: _with_library(body)
    for name, body in {
        "store_token": _STORE_TOKEN,
        "rotate_token": _ROTATE_TOKEN,
        "delete_token": _DELETE_TOKEN,
        "delete_user_tokens": _DELETE_USER_TOKENS,
        "store_session": _STORE_SESSION,
        "touch_session": _TOUCH_SESSION,
        "delete_session": _DELETE_SESSION,
        "delete_user_sessions": _DELETE_USER_SESSIONS,
    }.items()
}

SLOT: dict[str, str] = {
    name: _with_library(body)
    for name, body in {
        "idx_raise": _IDX_RAISE,
        "idx_set": _IDX_SET,
        "idx_rem": _IDX_REM,
        "tok_put": _TOK_PUT,
        "tok_cas": _TOK_CAS,
        "tok_take": _TOK_TAKE,
        "ref_set": _REF_SET,
        "ref_del": _REF_DEL,
        "ses_put": _SES_PUT,
        "ses_touch": _SES_TOUCH,
        "ses_take": _SES_TAKE,
    }.items()
}
