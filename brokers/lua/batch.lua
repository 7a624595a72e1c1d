-- Settle a fetched message: remove it from this worker's acks set and its
-- payload, and (optionally) enqueue its successor (a retry, a deferral, a
-- pending dead letter) in the same atomic step.  The successor is written
-- only if this worker still held the message, so a message that maintenance
-- already handed to another worker never gains a second successor.
-- ARGV: namespace, queue_name, broker_id, now_ms, id, [succ_queue, succ_id, succ_payload]
local ns, queue, broker_id, now, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call("zadd", ns .. ":__heartbeats__", now, broker_id)
local acks = ns .. ":__acks__." .. broker_id .. "." .. queue
local held = redis.call("srem", acks, id)
redis.call("srem", ns .. ":__started__." .. broker_id, id)
redis.call("hdel", ns .. ":__crashes__", id)
if held == 0 then
    return 0
end
redis.call("hdel", ns .. ":" .. queue .. ".msgs", id)
if ARGV[6] then
    local target = ns .. ":" .. ARGV[6]
    redis.call("hset", target .. ".msgs", ARGV[7], ARGV[8])
    redis.call("rpush", target, ARGV[7])
end
return 1
