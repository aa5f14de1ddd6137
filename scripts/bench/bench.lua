-- wrk script for the Evently benchmark. Arguments after `--`: MODE FILE THREADS
--   get      the URL given to wrk, as is
--   holds    POST /bookings/ with the pre-made bodies in FILE (one request per line:
--            "user_id<TAB>token<TAB>json"), each line used once; a thread that runs out
--            stops (and says so: `exhausted`)
--   confirm  as holds, and every 201 is followed by POST /bookings/{id}/confirm as that
--            user, on the next request slot of the same thread
-- done() prints one line, "BENCH_JSON {...}", with latency percentiles (µs) and the
-- responses counted by HTTP status (wrk itself only counts "status >= 400"), and how
-- many 429/503 answers carried Retry-After.

local threads = {}
local created = 0

function setup(thread)
  thread:set("thread_index", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "get"
  nthreads = tonumber(args[3] or "1")
  statuses = {}
  exhausted = 0
  holds_sent = 0
  confirms_sent = 0
  cache_hits = 0
  retry_after = 0
  queue = {}
  items = {}
  tokens = {}
  next_item = 1
  get_request = wrk.format(nil, nil)
  if mode ~= "get" then
    local i = 0
    for line in io.lines(args[2]) do
      if i % nthreads == thread_index then
        local uid, token, body = line:match("^(%d+)\t([^\t]+)\t(.*)$")
        tokens[uid] = token
        items[#items + 1] = wrk.format("POST", "/bookings/", {
          ["Authorization"] = "Bearer " .. token,
          ["Content-Type"] = "application/json",
        }, body)
      end
      i = i + 1
    end
  end
end

function request()
  if mode == "get" then
    return get_request
  end
  if #queue > 0 then
    confirms_sent = confirms_sent + 1
    return table.remove(queue, 1)
  end
  if next_item > #items then
    exhausted = 1
    wrk.thread:stop()
    return get_request
  end
  local r = items[next_item]
  next_item = next_item + 1
  holds_sent = holds_sent + 1
  return r
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status == 429 or status == 503) and (headers["retry-after"] or headers["Retry-After"]) then
    retry_after = retry_after + 1
  end
  if (headers["x-cache"] or headers["X-Cache"]) == "hit" then
    cache_hits = cache_hits + 1
  end
  if mode == "confirm" and status == 201 then
    local id = body:match('"id":(%d+)')
    local uid = body:match('"user_id":(%d+)')
    local token = uid and tokens[uid]
    if id and token then
      queue[#queue + 1] = wrk.format("POST", "/bookings/" .. id .. "/confirm", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }, "{}")
    end
  end
end

function done(summary, latency, requests)
  local merged, ex, holds, confirms, hits, after = {}, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
    ex = ex + (t:get("exhausted") or 0)
    holds = holds + (t:get("holds_sent") or 0)
    confirms = confirms + (t:get("confirms_sent") or 0)
    hits = hits + (t:get("cache_hits") or 0)
    after = after + (t:get("retry_after") or 0)
  end
  local parts = {}
  for code, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', code, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"p999": %d, "max": %d}, "statuses": {%s}, "exhausted_threads": %d, ' ..
    '"holds_sent": %d, "confirms_sent": %d, "cache_hits": %d, "retry_after": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(parts, ", "), ex, holds, confirms, hits, after))
end
