-- GET the paths of $BENCH_PATHS in turn, logging every response as
-- "t_send_us latency_us status x_cache path_index" (CLOCK_MONOTONIC, the clock of Python's
-- time.monotonic(); path_index counts from 1 in $BENCH_PATHS) to
-- $BENCH_LOG_DIR/swr-<thread>.log, so bench/stale_windows.py can split each key's answers at
-- its own expiry.  Run with one connection per thread (-tN -cN): a response then belongs to the
-- thread's last request.  $BENCH_DELAY_MS paces each connection (see timed.lua).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_swr_timespec_t;
int clock_gettime(int clk_id, bench_swr_timespec_t *tp);
]]
local ts = ffi.new("bench_swr_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local paths = {}
local index = 1
local delay_ms = 0
local t_send = nil
local sent_index = nil
local logfile = nil

function init(args)
  paths, index = load_paths()
  delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
  local log_dir = os.getenv("BENCH_LOG_DIR")
  if log_dir then
    logfile = io.open(log_dir .. "/swr-" .. thread_id .. ".log", "w")
  end
end

function delay()
  return delay_ms
end

function request()
  sent_index = index
  index = index + 1
  if index > #paths then index = 1 end
  t_send = now_us()
  return wrk.format("GET", paths[sent_index])
end

function response(status, headers, body)
  count_response(status, headers)
  if logfile and t_send then
    local x = headers["X-Cache"] or headers["x-cache"] or "-"
    -- stdio buffers the file; wrk exits through exit(), which flushes it.
    logfile:write(string.format("%d %d %d %s %d\n", t_send, now_us() - t_send, status, x,
                                sent_index))
  end
  t_send = nil
end
