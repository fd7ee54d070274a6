-- GET the paths of $BENCH_PATHS like paths.lua, logging every response's send time and latency
-- ("t_send_us latency_us status", CLOCK_MONOTONIC, the clock of Python's time.monotonic()) to
-- $BENCH_LOG_DIR/timed-<thread>.log, so the bench can take percentiles over any time window
-- (e.g. while a login burst runs).  Run with one connection per thread (-tN -cN): a response then
-- belongs to the thread's last request.  $BENCH_DELAY_MS (optional) paces each connection:
-- wrk waits that long before each request, so N connections send about N * 1000 / (delay +
-- latency) requests/s instead of as many as the server can take.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timed_timespec_t;
int clock_gettime(int clk_id, bench_timed_timespec_t *tp);
]]
local ts = ffi.new("bench_timed_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local paths = {}
local get_headers = nil
local index = 1
local delay_ms = 0
local t_send = nil
local logfile = nil

function init(args)
  paths, index = load_paths()
  get_headers = read_headers()
  delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
  local log_dir = os.getenv("BENCH_LOG_DIR")
  if log_dir then
    logfile = io.open(log_dir .. "/timed-" .. thread_id .. ".log", "w")
  end
end

function delay()
  return delay_ms
end

function request()
  local path = paths[index]
  index = index + 1
  if index > #paths then index = 1 end
  t_send = now_us()
  return wrk.format("GET", path, get_headers)
end

function response(status, headers, body)
  count_response(status, headers)
  if logfile and t_send then
    -- stdio buffers the file; wrk exits through exit(), which flushes it.
    logfile:write(string.format("%d %d %d\n", t_send, now_us() - t_send, status))
  end
  t_send = nil
end
