-- KEYS: token, user index, refresh index | ARGV: json, tid, exp, now, rid, refopen, mode
if ARGV[7] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
tok_store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
