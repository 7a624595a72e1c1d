-- Purge what waits in a queue and in its delay queue (messages a worker already holds stay).
-- Returns the purged payloads.  ARGV: namespace, queue_name
local ns, queue = ARGV[1], ARGV[2]
local out = {}
for _, name in ipairs({queue, queue .. ".DQ"}) do
    local list = ns .. ":" .. name
    local ids = redis.call("lrange", list, 0, -1)
    if #ids > 0 then
        redis.call("del", list)
        local msgs = list .. ".msgs"
        for _, id in ipairs(ids) do
            local body = redis.call("hget", msgs, id)
            if body then table.insert(out, body) end
            redis.call("hdel", msgs, id)
        end
    end
end
return out
