-- common.lua: shared by the wrk scripts of tests/bench/ (loaded with dofile).
--
-- Every script counts the requests it hands to wrk (`sent`, per thread), and
-- done() prints one machine-readable line that run.sh parses:
--
--   RESULT rps=... p50_us=... p99_us=... requests=... sent=... non2xx=...
--          socket_errors=... connect=... read=... write=... timeout=...
--          errors=... duration_us=...
--
-- requests  responses wrk completed (what its "requests in" line reports)
-- sent      request() calls: every request written, including those still in
--           flight when wrk stopped and one call wrk makes before the run to
--           check the request parses; so requests <= sent
-- non2xx    wrk's summary.errors.status: responses with a status above 399
-- errors    non2xx + connect + read + write + timeout (wrk's "socket errors";
--           a timeout is a response slower than --timeout, 2 s by default)
-- p50/p99   latency:percentile(), in microseconds, as wrk's --latency shows it

-- Main Lua state: setup() runs once per thread before the run, done() after.
local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
   thread:set("thread_id", #threads)
end

local function int(x)
   return math.floor(tonumber(x) or 0)
end

function done(summary, latency, requests)
   local sent = 0
   for _, t in ipairs(threads) do
      sent = sent + int(t:get("sent"))
   end
   local e = summary.errors
   local socket_errors = e.connect + e.read + e.write + e.timeout
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "RESULT rps=%.2f p50_us=%d p99_us=%d requests=%d sent=%d non2xx=%d " ..
      "socket_errors=%d connect=%d read=%d write=%d timeout=%d errors=%d duration_us=%d\n",
      seconds > 0 and summary.requests / seconds or 0,
      int(latency:percentile(50)), int(latency:percentile(99)),
      int(summary.requests), sent, int(e.status),
      int(socket_errors), int(e.connect), int(e.read), int(e.write), int(e.timeout),
      int(socket_errors + e.status), int(summary.duration)))
end

-- Thread Lua states: the scripts' request() add one to `sent` per request.
sent = 0

-- A different random sequence in each thread (and each run).
function seed_random()
   math.randomseed(os.time() * 1000 + 7919 * int(thread_id) + int(os.clock() * 1e6))
   for _ = 1, 10 do math.random() end
end
