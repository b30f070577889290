-- Holdings leave a presence channel. ARGV[1] = 'holding': ARGV[2] is the holding;
-- ARGV[1] = 'node': every holding that starts with ARGV[2] (a dead node's). KEYS: as hold.lua's.
-- Returns {vacated, member JSON…}: the members whose last holding this was, and vacated 1 when
-- they were the channel's last (0 otherwise).
local holdings = {ARGV[2]}
if ARGV[1] == 'node' then
  holdings = {}
  for _, holding in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(holding, 1, #ARGV[2]) == ARGV[2] then
      table.insert(holdings, holding)
    end
  end
end
local left = {0}
for _, holding in ipairs(holdings) do
  local member = redis.call('HGET', KEYS[1], holding)
  if member then
    redis.call('HDEL', KEYS[1], holding)
    if redis.call('HINCRBY', KEYS[2], member, -1) <= 0 then
      redis.call('HDEL', KEYS[2], member)
      table.insert(left, redis.call('HGET', KEYS[3], member) or '{}')
      redis.call('HDEL', KEYS[3], member)
    end
  end
end
if #left > 1 and redis.call('EXISTS', KEYS[2]) == 0 then
  left[1] = 1
end
return left
