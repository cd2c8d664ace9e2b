-- KEYS: counter | ARGV: window ms. The first increment of a window sets its expiry.
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
