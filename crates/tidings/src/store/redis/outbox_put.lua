-- Puts an event (ARGV[2]) in the webhook outbox stream KEYS[1], unless it holds ARGV[1] already.
-- Returns 1 when added, 0 when the outbox is full.
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
return 1
