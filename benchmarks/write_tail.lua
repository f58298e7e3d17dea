-- wrk script for benchmarks/write_tail.py: cart adds spread over pre-made sessions.
--
-- The argument after "--" is the sessions file (one "cookie<TAB>csrf" per line and
-- a line "skus<TAB>sku1,sku2,..."). WRITE_TAIL_PORTS (comma-separated, optional)
-- spreads the threads over ports: thread n talks to port n mod count, so one wrk
-- process loads two demo processes and its one latency histogram covers both.
--
-- Each request picks a session and a product at random (seeded per thread), so
-- writes land on many sessions at once, as many shoppers' do.

local threads = {}
local ports = {}

function setup(thread)
  if #ports == 0 then
    for port in (os.getenv("WRITE_TAIL_PORTS") or ""):gmatch("[^,]+") do table.insert(ports, port) end
  end
  local n = #threads
  if #ports > 0 then
    local port = ports[(n % #ports) + 1]
    thread.addr = wrk.lookup(wrk.host, port)[1]
  end
  thread:set("id", n)
  table.insert(threads, thread)
end

function init(args)
  ok, other = 0, 0
  sessions, skus = {}, {}
  for line in io.lines(args[1]) do
    local a, b = line:match("^([^\t]*)\t(.*)$")
    if a == "skus" then
      for sku in b:gmatch("[^,]+") do table.insert(skus, sku) end
    elseif a ~= nil then
      table.insert(sessions, {cookie = a, csrf = b})
    end
  end
  math.randomseed(1000 + id)
end

function request()
  local s = sessions[math.random(#sessions)]
  local sku = skus[math.random(#skus)]
  local headers = {
    ["Cookie"] = s.cookie,
    ["X-CSRF-Token"] = s.csrf,
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/api/cart/items", headers, '{"sku":"' .. sku .. '","qty":1}')
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local n_ok, n_other = 0, 0
  for _, t in ipairs(threads) do n_ok = n_ok + t:get("ok"); n_other = n_other + t:get("other") end
  local e = summary.errors
  io.write(string.format(
    'TAIL {"requests":%d,"us":%d,"ok":%d,"other":%d,"sock":%d,"p50":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, n_ok, n_other, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
