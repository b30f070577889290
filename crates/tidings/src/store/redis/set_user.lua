-- Binds the session to user ARGV[2] when ARGV[1] is '1', unbinds it otherwise.
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'user', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'user')
end
return {'ok'}
