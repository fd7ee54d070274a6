-- Shared by every bench script (prepended by bench/wrk.py): counters kept per thread by
-- response(), and a done() that prints one JSON line the bench parses ("BENCH_JSON {...}").
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

-- Per-thread counters (each wrk thread has its own Lua state).
counts = {s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, hit = 0, miss = 0, bypass = 0, stale = 0,
          nocache = 0, writes = 0, write_errors = 0}

-- Extra header on every GET, from $BENCH_READ_HEADER ("Name: value"), or nil.
function read_headers()
  local raw = os.getenv("BENCH_READ_HEADER")
  if raw == nil or raw == "" then return nil end
  local name, value = raw:match("^([^:]+):%s*(.*)$")
  if name == nil then return nil end
  return {[name] = value}
end

-- The non-empty lines of the file named by $BENCH_PATHS, and where this thread starts in them
-- (threads start evenly spread so they do not all walk the same keys in step).
function load_paths()
  local paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if #line > 0 then table.insert(paths, line) end
  end
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  return paths, math.floor((thread_id - 1) * #paths / nthreads) + 1
end

function count_response(status, headers)
  if status < 300 then counts.s2xx = counts.s2xx + 1
  elseif status < 400 then counts.s3xx = counts.s3xx + 1
  elseif status < 500 then counts.s4xx = counts.s4xx + 1
  else counts.s5xx = counts.s5xx + 1 end
  -- The service says X-Cache; the peer (fastapi-cache2) says X-FastAPI-Cache.
  local x = headers["X-Cache"] or headers["x-cache"] or headers["x-fastapi-cache"]
            or headers["X-FastAPI-Cache"]
  if x == nil then counts.nocache = counts.nocache + 1
  elseif x == "HIT" then counts.hit = counts.hit + 1
  elseif x == "MISS" then counts.miss = counts.miss + 1
  elseif x == "BYPASS" then counts.bypass = counts.bypass + 1
  else counts.stale = counts.stale + 1 end
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    if c then
      for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}, ' ..
    '"counts": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ", ")))
end
