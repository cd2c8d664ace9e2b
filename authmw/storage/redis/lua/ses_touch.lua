-- KEYS: session | ARGV: la, ex, exp, now
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
ses_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
