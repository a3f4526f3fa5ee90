-- hello.lua: (a) the ceiling, GET on the URL given to wrk (/_hello), an h2o
-- handler in the same binary that touches no object.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local req

function init(args)
   req = wrk.format("GET")
end

function request()
   sent = sent + 1
   return req
end
