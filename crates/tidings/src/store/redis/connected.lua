-- Live sessions: ARGV[1] empty for all of them as {session, user, …}, or a session id for 1 or 0.
-- KEYS: expiry zset, users hash.
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if score and tonumber(score) >= now then
    return 1
  end
  return 0
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local live = {}
for _, id in ipairs(ids) do
  live[#live + 1] = id
  live[#live + 1] = redis.call('HGET', KEYS[2], id)
end
return live
