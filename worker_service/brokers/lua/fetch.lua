-- Fetch message ids into this worker's acks set, with their payloads and crash counts.
-- An idle consumer waits with BLMOVE from the queue onto the queue's landing list, so one waiting consumer, not
-- all of them, wakes for each message; ``landed`` is the id its wait moved there: taken first, if still there
-- (the maintenance round puts back ids left there too long).  Up to ``count`` in all, the rest from the head
-- of the queue.  Returns a flat array: id, payload (false when the payload is gone), crash count.
-- ARGV: namespace, queue_name, broker_id, landed ("" = none), count
local ns, queue, broker_id, landed, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local list = ns .. ":" .. queue
local ids = {}
if landed ~= "" and redis.call("lrem", ns .. ":__landing__." .. queue, 1, landed) == 1 then
    ids[1] = landed
end
while #ids < count do
    local id = redis.call("lpop", list)
    if not id then break end
    ids[#ids + 1] = id
end
if #ids == 0 then
    return {}
end
redis.call("sadd", ns .. ":__acks__." .. broker_id .. "." .. queue, unpack(ids))
local bodies = redis.call("hmget", list .. ".msgs", unpack(ids))
local crashes = redis.call("hmget", ns .. ":__crashes__", unpack(ids))
local out = {}
for i, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = bodies[i]
    out[#out + 1] = tonumber(crashes[i] or "0")
end
return out
