-- Socket ARGV[2] of session ARGV[1] stops. KEYS: expiry zset, users hash, the session's sockets.
-- Returns nil when the session is not tracked or another socket still beats; otherwise removes
-- the session and returns {session, user}.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return false
end
redis.call('HDEL', KEYS[3], ARGV[2])
local sockets = redis.call('HGETALL', KEYS[3])
for i = 1, #sockets, 2 do
  if tonumber(sockets[i + 1]) >= now then
    return false
  end
end
local user = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return {ARGV[1], user}
