-- KEYS: token | ARGV: json, exp, now, mode -> {written, replaced refresh id}
if ARGV[4] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
return {1, tok_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3])}
