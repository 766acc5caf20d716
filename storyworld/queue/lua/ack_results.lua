-- Engine: acknowledge applied results (they leave the stream).
-- KEYS: results
-- ARGV: group, [entry ids]
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
