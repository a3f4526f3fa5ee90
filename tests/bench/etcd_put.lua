-- etcd_put.lua: the etcd reference of tests/bench/cluster.py. PUTs through
-- etcd's JSON gateway (POST /v3/kv/put), a 16-byte value each, like a counter
-- write: KEYS=1 (one key, "bench-one") or 1000 (bench-<0..999> at random).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local KEYS = tonumber(os.getenv("KEYS") or "1")
local VALUE = "MDEyMzQ1Njc4OWFiY2RlZg==" -- base64 of 16 bytes
local bodies = {}

local function b64(s)
   local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
   return ((s:gsub(".", function(x)
      local r, b = "", x:byte()
      for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
      return r
   end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
      if #x < 6 then return "" end
      local c = 0
      for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
      return chars:sub(c + 1, c + 1)
   end) .. ({"", "==", "="})[#s % 3 + 1])
end

function init(args)
   seed_random()
   for i = 0, KEYS - 1 do
      local key = KEYS == 1 and "bench-one" or ("bench-" .. i)
      bodies[i] = '{"key":"' .. b64(key) .. '","value":"' .. VALUE .. '"}'
   end
end

function request()
   sent = sent + 1
   local body = bodies[KEYS == 1 and 0 or math.random(0, KEYS - 1)]
   return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end
