-- Adds channels ARGV[2..] unless the session would then hold more than ARGV[1]: {'full'}.
local key, fields, seen = KEYS[1], {}, {}
for i = 2, #ARGV do
  local field = 'c:' .. ARGV[i]
  if not seen[field] and redis.call('HEXISTS', key, field) == 0 then
    seen[field] = true
    fields[#fields + 1] = field
    fields[#fields + 1] = '1'
  end
end
if #channels(key) - 1 + #fields / 2 > tonumber(ARGV[1]) then
  return {'full'}
end
if #fields > 0 then
  redis.call('HSET', key, unpack(fields))
end
return channels(key)
