-- The nodes whose liveness expired. KEYS: the nodes' zset.
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
