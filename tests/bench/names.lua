-- names.lua: POST /counter/<name>, a name picked at random for each request
-- from the file $NAMES (one per line; tests/bench/cluster.py writes it).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local names = {}

function init(args)
   seed_random()
   for line in io.lines(os.getenv("NAMES")) do
      names[#names + 1] = "/counter/" .. line
   end
end

function request()
   sent = sent + 1
   return wrk.format("POST", names[math.random(1, #names)], nil, "")
end
