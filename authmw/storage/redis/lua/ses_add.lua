-- Import on a cluster: insert a session only if absent.
-- KEYS: session | ARGV: json, la, ex, uid, exp, now -> 1 written, 0 already there
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
