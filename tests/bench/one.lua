-- one.lua: (b) POST on one object, the URL given to wrk (/counter/bench-one).
-- An empty body (Content-Length: 0) adds 1 to the counter.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local req

function init(args)
   req = wrk.format("POST", nil, nil, "")
end

function request()
   sent = sent + 1
   return req
end
