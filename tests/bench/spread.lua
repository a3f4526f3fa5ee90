-- spread.lua: (c) POST spread over 1,000 objects, /counter/bench-<0..999>
-- picked at random for each request (seeded per thread).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local OBJECTS = 1000

function init(args)
   seed_random()
end

function request()
   sent = sent + 1
   return wrk.format("POST", "/counter/bench-" .. math.random(0, OBJECTS - 1), nil, "")
end
