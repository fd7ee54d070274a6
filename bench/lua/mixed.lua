-- Mixed workload: GET the Zipf-ordered paths of $BENCH_PATHS and, every $BENCH_WRITE_EVERY-th
-- request, PATCH one of this thread's own posts ($BENCH_ITEMS: "id token base_version" lines;
-- thread t owns the lines i with i % threads == t - 1) with a new version tag in its content.
-- Run with one connection per thread (-tN -cN) so each response belongs to the last request:
-- that gives exact send and acknowledgement times for the stale-read check (bench/stale.py).
--   log lines: "A id version t_send t_ack" (write acknowledged, 2xx)
--              "S id version t_send"        (a read response showed that version of the post)
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local ts = ffi.new("bench_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC: one clock for every thread of this process
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local paths, items = {}, {}
local get_headers = nil
local index, sent, item_index = 1, 0, 0
local write_every = 20
local pending = nil
local logfile = nil
local lines_since_flush = 0

function init(args)
  paths, index = load_paths()
  get_headers = read_headers()
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  write_every = tonumber(os.getenv("BENCH_WRITE_EVERY") or "20")
  local items_file = os.getenv("BENCH_ITEMS")
  if items_file and write_every > 0 then
    local i = 0
    for line in io.lines(items_file) do
      local id, token, base = line:match("^(%d+) (%S+) (%d+)$")
      if id then
        if i % nthreads == thread_id - 1 then
          table.insert(items, {id = id, token = token, version = tonumber(base)})
        end
        i = i + 1
      end
    end
  end
  local log_dir = os.getenv("BENCH_LOG_DIR")
  if log_dir then
    logfile = io.open(log_dir .. "/thread-" .. thread_id .. ".log", "w")
  end
end

local function log(line)
  if logfile then
    logfile:write(line, "\n")
    lines_since_flush = lines_since_flush + 1
    if lines_since_flush >= 200 then logfile:flush(); lines_since_flush = 0 end
  end
end

function request()
  sent = sent + 1
  if write_every > 0 and #items > 0 and sent % write_every == 0 then
    item_index = item_index % #items + 1
    local item = items[item_index]
    item.version = item.version + 1
    pending = {write = true, id = item.id, version = item.version, t = now_us()}
    local body = string.format('{"content": "[bench:post=%s:v=%d] edited by the bench"}',
                               item.id, item.version)
    return wrk.format("PATCH", "/api/posts/" .. item.id,
                      {["Authorization"] = "Bearer " .. item.token,
                       ["Content-Type"] = "application/json"}, body)
  end
  local path = paths[index]
  index = index + 1
  if index > #paths then index = 1 end
  pending = {write = false, t = now_us()}
  return wrk.format("GET", path, get_headers)
end

function response(status, headers, body)
  local p = pending
  pending = nil
  if p == nil then
    count_response(status, headers)
    return
  end
  count_response(status, headers)
  if p.write then
    counts.writes = counts.writes + 1
    if status >= 200 and status < 300 then
      log(string.format("A %s %d %d %d", p.id, p.version, p.t, now_us()))
    else
      counts.write_errors = counts.write_errors + 1
    end
    return
  end
  for id, version in body:gmatch("%[bench:post=(%d+):v=(%d+)%]") do
    log(string.format("S %s %s %d", id, version, p.t))
  end
end
