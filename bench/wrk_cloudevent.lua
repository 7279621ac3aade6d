-- wrk script: POST one binary CloudEvent per request, with a unique ce-id and a send
-- timestamp, count answers by status and print one JSON line from `done`.
--
-- The Python harness prepends two globals before this file:
--   EVENT_HEADERS  table of header name -> value (ce-* headers and content-type)
--   EVENT_BODY     string, the event data
--   RUN_ID         string, prefix of every ce-id (distinct per wrk invocation)
-- Script arguments (after `--` on the wrk command line): an optional ce-type override.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]])
local tv = ffi.new("bench_timeval")

local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

-- Main state: remember every thread so `done` can read its counters.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Per-thread state; globals so the main state can read them with thread:get().
sent = 0
statuses = {}

function init(args)
  wrk.method = "POST"
  wrk.body = EVENT_BODY
  for name, value in pairs(EVENT_HEADERS) do
    wrk.headers[name] = value
  end
  if args[1] ~= nil and args[1] ~= "" then
    wrk.headers["ce-type"] = args[1]
  end
end

function request()
  sent = sent + 1
  -- Unique per run and thread, so dedupe and delivery counting see distinct events.
  wrk.headers["ce-id"] = string.format("%s-%d-%d", RUN_ID, tid, sent)
  -- Send time in microseconds since the epoch: lets a subscriber measure delivery latency.
  wrk.headers["ce-benchsentus"] = string.format("%.0f", now_us())
  return wrk.format()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total_sent = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    total_sent = total_sent + (thread:get("sent") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local e = summary.errors
  local mean = latency.mean
  if mean ~= mean then mean = 0 end -- NaN when nothing was answered
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "sent": %d, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, total_sent, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, mean
  ))
end
