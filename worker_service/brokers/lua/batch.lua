-- A batch of marks and settles from one worker process (brokers.groupcommit), in one atomic step.
--
-- mark:   the message is about to run: a worker death from now on counts as a crash of it.
-- settle: remove the message from this worker's acks set, its payload and its crash count
--         ("settle-clean": it had none), and (optionally)
--         enqueue its successor (a retry, a deferral, a pending dead letter) in the same step.
--         The successor is written only if this worker still held the message, so a message
--         that recovery already handed to another worker never gains a second successor.
--
-- ARGV: namespace, broker_id, now_ms, then 6 per operation:
--       kind ("mark" | "settle" | "settle-clean"), queue_name, id, succ_queue, succ_id, succ_payload ("" = none)
-- Returns one integer per operation: 1 for a mark; for a settle 1 if this worker held the message.
-- (The heartbeat is the maintenance thread's: a batch does not repeat it.)
local ns, broker_id = ARGV[1], ARGV[2]
local started = ns .. ":__started__." .. broker_id
local out = {}
for i = 4, #ARGV, 6 do
    local kind, queue, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if kind == "mark" then
        redis.call("sadd", started, id)
        table.insert(out, 1)
    else
        local held = redis.call("srem", ns .. ":__acks__." .. broker_id .. "." .. queue, id)
        redis.call("srem", started, id)
        if kind == "settle" then
            redis.call("hdel", ns .. ":__crashes__", id)
        end
        if held == 1 then
            redis.call("hdel", ns .. ":" .. queue .. ".msgs", id)
            if ARGV[i + 3] ~= "" then
                local target = ns .. ":" .. ARGV[i + 3]
                redis.call("hset", target .. ".msgs", ARGV[i + 4], ARGV[i + 5])
                redis.call("rpush", target, ARGV[i + 4])
            end
        end
        table.insert(out, held)
    end
end
return out
