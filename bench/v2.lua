-- wrk script: POST one V2 (Open Inference Protocol) request body over and over.
-- Env: V2_BODY_FILE (the body, read as bytes), V2_CONTENT_TYPE (default application/json),
--      V2_HEADER_LENGTH (binary tensor extension: sets Inference-Header-Content-Length).
-- Prints one line: RESULT {json}. "errors" counts socket errors, timeouts and every non-2xx
-- answer (wrk itself only counts statuses above 399).
local file = assert(io.open(assert(os.getenv("V2_BODY_FILE"), "V2_BODY_FILE is not set"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("V2_CONTENT_TYPE") or "application/json"
local header_length = os.getenv("V2_HEADER_LENGTH")
if header_length and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

non2xx = 0
first_bad = ""
function response(status, headers, body)
  if status < 200 or status > 299 then
    if non2xx == 0 then first_bad = status .. " " .. string.sub(body, 1, 200) end
    non2xx = non2xx + 1
  end
end

local function quoted(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local bad, sample = 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    if sample == "" then sample = thread:get("first_bad") end
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,' ..
    '"max_ms":%.3f,"errors":%d,"non2xx":%d,"socket_errors":%d,"timeouts":%d,"first_bad":%s}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, e.connect + e.read + e.write + e.timeout + bad, bad,
    e.connect + e.read + e.write, e.timeout, quoted(sample)))
end
