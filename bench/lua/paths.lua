-- GET the paths listed in $BENCH_PATHS (one per line) in order, each thread from its own offset;
-- with BENCH_ONCE=1 (use -t1) wrk ends once as many responses as paths have arrived: it
-- interrupts its own main thread's sleep with SIGINT, so wrk stops and reports as usual.
local ffi = require("ffi")
ffi.cdef[[
int getpid(void);
int kill(int pid, int sig);
]]
local paths = {}
local get_headers = nil
local index = 1
local once = false

function init(args)
  paths, index = load_paths()
  get_headers = read_headers()
  once = os.getenv("BENCH_ONCE") == "1"
end

function request()
  local path = paths[index]
  index = index + 1
  if index > #paths then index = 1 end
  return wrk.format("GET", path, get_headers)
end

local received = 0

function response(status, headers, body)
  count_response(status, headers)
  received = received + 1
  if once and received >= #paths then
    once = false
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end
