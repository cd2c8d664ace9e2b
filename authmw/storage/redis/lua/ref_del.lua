-- KEYS: refresh index | ARGV: tid
ref_del(KEYS[1], ARGV[1])
return 1
