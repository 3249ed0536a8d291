-- wrk script: GETs drawn at random from a routes file (one absolute path per line; the mix —
-- genes, obs fields, points — is set by how often each kind appears in the file), as the
-- viewer sends them (gzip accepted, Origin set). Prints one machine-readable summary line.
local routes = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then routes[#routes + 1] = line end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local path = routes[math.random(#routes)]
  return wrk.format("GET", path, {
    ["Accept-Encoding"] = "gzip",
    ["Origin"] = "https://www.cellucid.com",
  })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SUMMARY requests=%d duration_s=%.1f rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f "
      .. "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
