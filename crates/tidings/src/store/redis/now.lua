-- Every presence script starts here: `now` is the Redis server's clock in milliseconds, the one
-- clock all nodes share.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
