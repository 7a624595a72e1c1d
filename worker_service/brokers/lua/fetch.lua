-- Fetch message ids into this worker's acks set, with their payloads.
-- An idle consumer waits with BLMOVE from the queue onto the queue's landing list, so one waiting consumer, not
-- all of them, wakes for each message; ``landed`` is the id its wait moved there: taken first, if still there
-- (the maintenance round puts back ids left there too long).  Up to ``count`` in all, the rest from the head
-- of the queue: one LPOP with a count (Redis >= 6.2, ``pop_many`` = "1"), else one LPOP per id.
-- A message's crash count travels in its id (recover.lua), so nothing else is read.
-- Returns a flat array: id, payload (false when the payload is gone).
-- ARGV: namespace, queue_name, broker_id, landed ("" = none), count, pop_many
local ns, queue, broker_id, landed, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local list = ns .. ":" .. queue
local ids = {}
if landed ~= "" and redis.call("lrem", ns .. ":__landing__." .. queue, 1, landed) == 1 then
    ids[1] = landed
end
if #ids < count then
    if ARGV[6] == "1" then
        local popped = redis.call("lpop", list, count - #ids)
        if popped then
            for _, id in ipairs(popped) do ids[#ids + 1] = id end
        end
    else
        while #ids < count do
            local id = redis.call("lpop", list)
            if not id then break end
            ids[#ids + 1] = id
        end
    end
end
if #ids == 0 then
    return {}
end
redis.call("sadd", ns .. ":__acks__." .. broker_id .. "." .. queue, unpack(ids))
local bodies = redis.call("hmget", list .. ".msgs", unpack(ids))
local out = {}
for i, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = bodies[i]
end
return out
