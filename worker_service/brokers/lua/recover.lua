-- Requeue every message held by workers whose heartbeat is older than the timeout, on every registered queue
-- and its delay queue.  What such a worker had started (its started sets, brokers/lua/batch.lua) crashed with
-- it: each goes back under an id that counts the crash, "<id>#crashes=<n>", so a fetch learns the count from
-- the id and reads nothing more for it.  No KEYS: the queue names come from the registry set that live
-- workers keep up to date.
-- ARGV: namespace, now_ms, heartbeat_timeout_ms
local ns, now, timeout = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local heartbeats = ns .. ":__heartbeats__"
local dead = redis.call("zrangebyscore", heartbeats, 0, now - timeout)
local queues = redis.call("smembers", ns .. ":__queues__")
local requeued = 0
for _, broker_id in ipairs(dead) do
    redis.call("del", ns .. ":__started__." .. broker_id)  -- one set per process, as earlier versions kept it
    for _, queue in ipairs(queues) do
        local list = ns .. ":" .. queue
        local msgs = list .. ".msgs"
        local started = ns .. ":__started__." .. broker_id .. "." .. queue
        for _, id in ipairs(redis.call("smembers", started)) do
            local body = redis.call("hget", msgs, id)
            if body then
                local base, crashes = string.match(id, "^(.*)#crashes=(%d+)$")
                local counted = (base or id) .. "#crashes=" .. ((tonumber(crashes) or 0) + 1)
                redis.call("hdel", msgs, id)
                redis.call("hset", msgs, counted, body)
                redis.call("rpush", list, counted)
                requeued = requeued + 1
            end
        end
        redis.call("del", started)
        for _, name in ipairs({queue, queue .. ".DQ"}) do
            local acks = ns .. ":__acks__." .. broker_id .. "." .. name
            local name_list = ns .. ":" .. name
            for _, id in ipairs(redis.call("smembers", acks)) do
                if redis.call("hexists", name_list .. ".msgs", id) == 1 then
                    redis.call("rpush", name_list, id)
                    requeued = requeued + 1
                end
            end
            redis.call("del", acks)
        end
    end
    redis.call("zrem", heartbeats, broker_id)
end
return {#dead, requeued}
