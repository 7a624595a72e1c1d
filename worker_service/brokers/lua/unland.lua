-- Put ids back at the head of their queue from its landing list, where a wait moved them and no fetch took
-- them (a consumer that died or closed between its wait and its fetch).  Each id at most once: one a fetch
-- took meanwhile is no longer on the landing list and is left alone.  Returns how many went back.
-- ARGV: namespace, queue_name, then the ids
local ns, queue = ARGV[1], ARGV[2]
local list = ns .. ":" .. queue
local landing = ns .. ":__landing__." .. queue
local back = 0
for i = #ARGV, 3, -1 do
    if redis.call("lrem", landing, 1, ARGV[i]) == 1 and redis.call("hexists", list .. ".msgs", ARGV[i]) == 1 then
        redis.call("lpush", list, ARGV[i])
        back = back + 1
    end
end
return back
