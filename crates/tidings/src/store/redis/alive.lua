-- Node ARGV[1] is alive for ARGV[2] ms more. KEYS: the nodes' zset (node -> when its liveness
-- expires). Returns 1 when it was known as alive, 0 when it had expired or was unknown.
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if was and tonumber(was) >= now then
  return 1
end
return 0
