-- KEYS: session | ARGV: la, ex, exp, now, sid, useropen, sessions suffix
local uid = redis.call('HGET', KEYS[1], 'u')
if not uid then return 0 end
idx_set(ARGV[6] .. uid .. ARGV[7], ARGV[5], ARGV[3], ARGV[4])
ses_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
