-- A batch of marks and settles from one worker process (brokers.groupcommit) in one atomic step, for batches
-- that enqueue a successor (the others go as plain commands: brokers.redis ``_run_batch``).
--
-- mark:           the message is about to run: moved from this worker's acks set of its queue to its started
--                 set, so a worker death from now on counts as a crash of it (recover.lua).
-- settle:         remove the message from this worker's acks set ("settle-started": from its started set) and
--                 its payload, and (optionally) enqueue its successor (a retry, a deferral, a pending dead
--                 letter) in the same step.  The successor is written only if this worker still held the
--                 message, so a message that recovery already handed to another worker never gains a second
--                 successor.
--
-- ARGV: namespace, broker_id, now_ms, then 6 per operation:
--       kind ("mark" | "settle" | "settle-started"), queue_name, id, succ_queue, succ_id, succ_payload ("" = none)
-- Returns one integer per operation: for a mark 1 if the message moved; for a settle 1 if this worker held it.
local ns, broker_id = ARGV[1], ARGV[2]
local out = {}
for i = 4, #ARGV, 6 do
    local kind, queue, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local acks = ns .. ":__acks__." .. broker_id .. "." .. queue
    local started = ns .. ":__started__." .. broker_id .. "." .. queue
    if kind == "mark" then
        table.insert(out, redis.call("smove", acks, started, id))
    else
        local first, other = acks, started
        if kind == "settle-started" then first, other = started, acks end
        -- the other set too when needed: a mark whose reply was lost moved the id without the process knowing
        local held = redis.call("srem", first, id)
        if held == 0 then held = redis.call("srem", other, id) end
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
