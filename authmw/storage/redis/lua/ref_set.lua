-- KEYS: refresh index | ARGV: tid, exp, now
put_string(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
