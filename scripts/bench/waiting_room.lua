-- wrk script for the waiting-room scenario's poll capacity: GET /events/{id}/queue/me as
-- one fan after another, as fast as the server answers. bench.lua's setup, response and
-- done are reused as they are (the same BENCH_JSON line). Arguments after `--`:
-- polls FILE THREADS, with FILE lines "access token<TAB>queue token<TAB>path".
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "bench.lua")

local counters = init
function init(args)
  counters({ "get", "-", args[3] })
  polls = {}
  local i = 0
  for line in io.lines(args[2]) do
    if i % nthreads == thread_index then
      local token, queue_token, path = line:match("^([^\t]+)\t([^\t]*)\t(.*)$")
      polls[#polls + 1] = wrk.format("GET", path, {
        ["Authorization"] = "Bearer " .. token,
        ["Queue-Token"] = queue_token,
      })
    end
    i = i + 1
  end
  next_poll = 0
end

function request()
  next_poll = next_poll % #polls + 1
  return polls[next_poll]
end
