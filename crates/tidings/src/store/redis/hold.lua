-- Holding ARGV[1] of member ARGV[2] (its JSON in ARGV[3]; ARGV[4] = '1' when it carries info)
-- enters a presence channel. KEYS: the channel's holdings (holding -> member id), members
-- (member id -> holdings) and member JSON (member id -> JSON), all in the channel's hash slot.
-- Returns {member joined, channel occupied}, each 1 or 0; a holding already there changes nothing.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, 0}
end
local occupied = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  occupied = 1
end
local count = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if count == 1 or ARGV[4] == '1' then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
end
if count == 1 then
  return {1, occupied}
end
return {0, occupied}
