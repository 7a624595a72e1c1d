-- Fetch up to N message ids from a queue into this worker's acks set.
-- Returns a flat array: id, payload (false when the payload is gone), crash count.
-- ARGV: namespace, queue_name, broker_id, now_ms, count
local ns, queue, broker_id, now, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call("zadd", ns .. ":__heartbeats__", now, broker_id)
local acks = ns .. ":__acks__." .. broker_id .. "." .. queue
local list = ns .. ":" .. queue
local msgs = list .. ".msgs"
local crashes = ns .. ":__crashes__"
local out = {}
for i = 1, count do
    local id = redis.call("lpop", list)
    if not id then break end
    redis.call("sadd", acks, id)
    table.insert(out, id)
    table.insert(out, redis.call("hget", msgs, id))
    table.insert(out, tonumber(redis.call("hget", crashes, id) or "0"))
end
return out
