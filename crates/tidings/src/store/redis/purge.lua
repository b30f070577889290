-- Removes up to ARGV[2] expired sessions. KEYS: expiry zset, users hash; ARGV[1]: the prefix of
-- sockets hashes (same hash slot). Returns {session, user, session, user, …}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[2]))
local gone = {}
for _, id in ipairs(ids) do
  gone[#gone + 1] = id
  gone[#gone + 1] = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[1] .. id)
end
return gone
