-- Requeue every message held by workers whose heartbeat is older than the
-- timeout, on every registered queue and its delay queue, and count a crash
-- for each message such a worker had started.  No KEYS: the queue names
-- come from the registry set that live workers keep up to date.
-- ARGV: namespace, now_ms, heartbeat_timeout_ms
local ns, now, timeout = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local heartbeats = ns .. ":__heartbeats__"
local dead = redis.call("zrangebyscore", heartbeats, 0, now - timeout)
local queues = redis.call("smembers", ns .. ":__queues__")
local requeued = 0
for _, broker_id in ipairs(dead) do
    local started_key = ns .. ":__started__." .. broker_id
    for _, id in ipairs(redis.call("smembers", started_key)) do
        redis.call("hincrby", ns .. ":__crashes__", id, 1)
    end
    redis.call("del", started_key)
    for _, queue in ipairs(queues) do
        for _, name in ipairs({queue, queue .. ".DQ"}) do
            local acks = ns .. ":__acks__." .. broker_id .. "." .. name
            local list = ns .. ":" .. name
            for _, id in ipairs(redis.call("smembers", acks)) do
                if redis.call("hexists", list .. ".msgs", id) == 1 then
                    redis.call("rpush", list, id)
                    requeued = requeued + 1
                end
            end
            redis.call("del", acks)
        end
    end
    redis.call("zrem", heartbeats, broker_id)
end
return {#dead, requeued}
