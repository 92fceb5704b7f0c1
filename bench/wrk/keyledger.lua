-- wrk script for the keyledger benchmarks (used by bench/run.sh, for the bare baseline and for
-- the real server alike, so both see byte-for-byte the same kind of requests).
--
-- Script arguments (after `--` on the wrk command line):
--   create <expected-status> <tag> <expires_at>   POST /v1/api_keys, a unique name per request:
--                                                 "bench-<tag>-<thread>-<counter>"
--   get    <expected-status> <path>               GET <path>
-- The bearer token is read from the environment variable KEYLEDGER_BENCH_TOKEN (so that it does
-- not show up in `ps`); if unset, a dummy token of the right shape is sent.
--
-- Only responses with the expected status are counted as "good"; everything else is tallied per
-- status and reported by done() in one machine-readable line starting with "RESULT ".

local threads = {}
local next_tid = 1

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

function init(args)
   mode = args[1]
   expect = tonumber(args[2])
   good = 0
   other = 0
   statuses = {}
   sample = nil
   counter = 0
   local token = os.getenv("KEYLEDGER_BENCH_TOKEN")
   if token == nil or token == "" then
      token = "rootly_" .. string.rep("0", 64)
   end
   if mode == "create" then
      local tag = args[3]
      local expires_at = args[4]
      headers = {
         ["Authorization"] = "Bearer " .. token,
         ["Content-Type"] = "application/vnd.api+json",
         ["Accept"] = "application/vnd.api+json",
      }
      prefix = '{"data":{"type":"api_keys","attributes":{"name":"bench-' .. tag .. "-" .. tid .. "-"
      suffix = '","kind":"personal","expires_at":"' .. expires_at .. '"}}}'
   elseif mode == "get" then
      fixed_request = wrk.format("GET", args[3], {
         ["Authorization"] = "Bearer " .. token,
         ["Accept"] = "application/vnd.api+json",
      })
   else
      error("keyledger.lua: unknown mode " .. tostring(mode))
   end
end

function request()
   if mode == "create" then
      counter = counter + 1
      return wrk.format("POST", "/v1/api_keys", headers, prefix .. counter .. suffix)
   end
   return fixed_request
end

function response(status, hdrs, body)
   if status == expect then
      good = good + 1
   else
      other = other + 1
      local k = tostring(status)
      statuses[k] = (statuses[k] or 0) + 1
      if sample == nil and body ~= nil then
         sample = string.sub(body, 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local g, o, by_status, first_sample = 0, 0, {}, nil
   for _, t in ipairs(threads) do
      g = g + (t:get("good") or 0)
      o = o + (t:get("other") or 0)
      local st = t:get("statuses") or {}
      for k, v in pairs(st) do
         by_status[k] = (by_status[k] or 0) + v
      end
      if first_sample == nil then
         first_sample = t:get("sample")
      end
   end
   local parts = {}
   for k, v in pairs(by_status) do
      table.insert(parts, k .. ":" .. v)
   end
   table.sort(parts)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "RESULT good=%d other=%d requests=%d duration_s=%.3f good_rps=%.1f all_rps=%.1f " ..
      "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f " ..
      "err_connect=%d err_read=%d err_write=%d err_timeout=%d statuses=%s\n",
      g, o, summary.requests, secs, g / secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.timeout,
      (#parts > 0) and table.concat(parts, ",") or "-"))
   if first_sample ~= nil then
      io.write("SAMPLE unexpected response body: " .. string.gsub(first_sample, "%s+", " ") .. "\n")
   end
end
