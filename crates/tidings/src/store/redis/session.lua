-- Every session script starts here. A session is one hash: `_` (always there), `user` (when
-- bound), and `c:<channel>` per subscribed channel. `channels(key)` returns {'ok', channel…}.
local function channels(key)
  local out = {'ok'}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 2) == 'c:' then
      out[#out + 1] = string.sub(field, 3)
    end
  end
  return out
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
