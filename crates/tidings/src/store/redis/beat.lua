-- A beat of socket ARGV[2] for session ARGV[1], lasting ARGV[3] ms, bound to user ARGV[5] when
-- ARGV[4] is '1'. KEYS: expiry zset, users hash, the session's sockets hash.
-- Returns {outcome, user of the expired session}: 'new', 'live' or 'expired'.
local until_ = now + tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local outcome, old_user = 'new', false
if score then
  if tonumber(score) < now then
    outcome = 'expired'
    old_user = redis.call('HGET', KEYS[2], ARGV[1])
    redis.call('DEL', KEYS[3])
  else
    outcome = 'live'
  end
end
redis.call('ZADD', KEYS[1], until_, ARGV[1])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local sockets = redis.call('HGETALL', KEYS[3])
for i = 1, #sockets, 2 do
  if tonumber(sockets[i + 1]) < now then
    redis.call('HDEL', KEYS[3], sockets[i])
  end
end
redis.call('HSET', KEYS[3], ARGV[2], until_)
return {outcome, old_user}
