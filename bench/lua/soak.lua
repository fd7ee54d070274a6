-- The soak's load: lua/mixed.lua (Zipf reads of every cached route, every Nth request a PATCH,
-- logged for the stale-read check) run as it is, plus:
--   * pacing: $BENCH_DELAY_MS before each request on each connection (a steady load for
--     minutes, not a saturating one);
--   * every response outside 2xx logged with its times and request line to
--     $BENCH_LOG_DIR/errors.log: "E status t_send_us t_recv_us METHOD PATH"
--     (CLOCK_MONOTONIC, the clock of Python's time.monotonic()), so the bench can tell 5xx
--     inside a restart window from 5xx outside it.
-- Needs $BENCH_LUA_DIR (the directory of mixed.lua).  One connection per thread (-tN -cN).
dofile(os.getenv("BENCH_LUA_DIR") .. "/mixed.lua")

local mixed_init, mixed_request, mixed_response = init, request, response
local ffi = require("ffi")
local soak_ts = ffi.new("bench_timespec_t")  -- declared by mixed.lua
local function soak_now_us()
  ffi.C.clock_gettime(1, soak_ts)
  return tonumber(soak_ts.tv_sec) * 1000000 + math.floor(tonumber(soak_ts.tv_nsec) / 1000)
end

local soak_delay_ms = 0
local soak_sent, soak_line = 0, ""
local soak_threads = {}
-- Error lines are kept in memory and written by done(), not to a file per thread: wrk sizes
-- each thread's event loop for 10 + 3 * connections descriptors, and mixed.lua's log files
-- already take one each; a second file per thread pushes the last sockets past that size
-- (wrk then counts them as connect errors and never uses them).
soak_errors = {}

local common_setup, common_done = setup, done

function setup(thread)
  common_setup(thread)
  table.insert(soak_threads, thread)
end

function init(args)
  mixed_init(args)
  soak_delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
end

function delay()
  return soak_delay_ms
end

function request()
  local req = mixed_request()
  soak_sent = soak_now_us()
  soak_line = req:match("^(%S+ %S+)") or "?"
  return req
end

function response(status, headers, body)
  if status < 200 or status >= 300 then
    table.insert(soak_errors, string.format("E %d %d %d %s", status, soak_sent, soak_now_us(),
                                            soak_line))
  end
  mixed_response(status, headers, body)
end

function done(summary, latency, requests)
  local log_dir = os.getenv("BENCH_LOG_DIR")
  if log_dir then
    local out = io.open(log_dir .. "/errors.log", "w")
    for _, thread in ipairs(soak_threads) do
      for _, line in ipairs(thread:get("soak_errors") or {}) do out:write(line, "\n") end
    end
    out:close()
  end
  common_done(summary, latency, requests)
end
