-- gatehouse bench (bench/peers.ts): the wrk script of every measurement.
--   BENCH_AUTH    a fixed Authorization header value (absent: no header)
--   BENCH_TOKENS  a file of tokens, one a line, sent as "Bearer <token>" in turn: a new token on
--                 every request (the first-sight JWT measurement)
-- done() prints one BENCH_RESULT line of JSON that the harness parses.
local auth = os.getenv("BENCH_AUTH")
local file = os.getenv("BENCH_TOKENS")
local tokens = {}
local n = 0
local i = 0

if file ~= nil and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
end

if n > 0 then
  request = function()
    i = i + 1
    if i > n then i = 1 end
    return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
  end
elseif auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50":%.0f,"p99":%.0f,"max":%.0f,"tokens":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, n))
end
