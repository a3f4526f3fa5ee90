-- rows.lua: store.py's database builder. Every thread hands wrk QUOTA
-- POST /probe/NAME/multi?k=<thread>-<n>&count=1&pad=PAD (one row of PAD random
-- bytes each, keys distinct), then writes MARKDIR/issued-<thread>; after that
-- its connections ask GET /_hello (no write). store.py stops wrk (SIGINT) once
-- both markers are there and the server's commits stopped moving, so every
-- POST sent has been answered.
--
-- wrk 4.1 calls request() once in the first thread's state before the run,
-- to check that the request parses, and never sends that one: thread 1's
-- first call answers a GET and counts nothing. Should another wrk lose a
-- POST anyway, the counts below are what was answered, and store.py sends
-- the missing rows itself afterwards.
--
--   wrk -t2 -c64 -d3600s -s rows.lua http://HOST:PORT -- QUOTA MARKDIR NAME PAD
--
-- done() prints common.lua's RESULT line (its counts include the GETs) and
--   ROWS posts=... acked=... failed=...
-- posts: POSTs handed to wrk; acked: 200 answers to them; failed: any other
-- status.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local common_done = done

function done(summary, latency, requests)
   common_done(summary, latency, requests)
   local posts, acked, failed = 0, 0, 0
   for _, t in ipairs(threads_list) do
      posts = posts + (tonumber(t:get("posts")) or 0)
      acked = acked + (tonumber(t:get("acked")) or 0)
      failed = failed + (tonumber(t:get("failed")) or 0)
   end
   io.write(string.format("ROWS posts=%d acked=%d failed=%d\n", posts, acked, failed))
end

-- common.lua keeps its thread list local: keep our own.
local common_setup = setup
threads_list = {}
function setup(thread)
   common_setup(thread)
   threads_list[#threads_list + 1] = thread
end

-- Thread states.
posts, acked, failed = 0, 0, 0
local quota, markdir, path, hello
local calls = 0

function init(args)
   quota = math.floor(tonumber(args[1]) or 0)
   markdir = args[2]
   path = "/probe/" .. (args[3] or "rows") .. "/multi?count=1&pad=" .. (args[4] or "1000") .. "&k=" .. thread_id .. "-"
   hello = wrk.format("GET", "/_hello")
end

function request()
   sent = sent + 1
   calls = calls + 1
   if quota == nil or (thread_id == 1 and calls == 1) then -- wrk's check before the run: not sent
      return wrk.format("GET", "/_hello")
   end
   if posts < quota then
      posts = posts + 1
      if posts == quota then
         local f = io.open(markdir .. "/issued-" .. thread_id, "w")
         f:write(posts, "\n")
         f:close()
      end
      return wrk.format("POST", path .. posts, nil, "")
   end
   return hello
end

function response(status, headers, body)
   -- The POSTs answer JSON, /_hello answers "hello\n".
   if body:sub(1, 1) ~= "{" then
      return
   end
   if status == 200 then
      acked = acked + 1
   else
      failed = failed + 1
   end
end
