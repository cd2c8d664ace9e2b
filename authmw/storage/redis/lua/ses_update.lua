-- KEYS: session | ARGV: json, la, ex, uid, exp, now -> 1 written, 0 gone (never recreated)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
