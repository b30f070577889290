-- Removes channels ARGV[2..], or every channel when ARGV[1] is 'all'; returns those left.
local key, held = KEYS[1], channels(KEYS[1])
for i = 2, (ARGV[1] == 'all') and #held or #ARGV do
  local name = (ARGV[1] == 'all') and held[i] or ARGV[i]
  redis.call('HDEL', key, 'c:' .. name)
end
return channels(key)
