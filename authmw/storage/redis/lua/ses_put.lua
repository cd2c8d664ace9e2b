-- KEYS: session | ARGV: json, la, ex, uid, exp, now
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
