-- KEYS: session, user index | ARGV: json, la, ex, uid, sid, exp, now -> 1 written, 0 gone
-- Only a session that still exists is written: a save never recreates a deleted one.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
idx_set(KEYS[2], ARGV[5], ARGV[6], ARGV[7])
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[7])
return 1
