-- wrk script for scripts/bench.sh: rotates 8 API keys (4 clients) over the
-- 10 routes of bench/policy.toml, and prints one machine-readable line.
--
--   BENCH_MODE=nginx   GET /v1/r<i>/models through nginx, Host: bench.example.com,
--                      Authorization: Bearer <key>
--   BENCH_MODE=direct  GET /authz straight to gatekeeper, with the headers the
--                      bundled /_authz location sends (X-Original-*, X-Real-IP,
--                      X-Request-ID, Authorization)
--
-- BENCHMARK CREDENTIALS ONLY (bench/policy.toml holds their digests).
--
-- Requests are built once per thread in init(); request() only hands out the
-- next one. Non-2xx answers are counted by wrk itself (summary.errors.status:
-- every status > 399), so no per-response Lua hook slows the load generator.

local keys = {
    "gk_801g1hrgx7hb_ipzm9pdaHfnAk6gTVQM6eABmwd1Jc4sj03q2fG",
    "gk_o1vj2fxr1ciu_a96tv9VO4zmtcAYF0oAM7eVfxQqKFz2M20XnQy",
    "gk_yf1a52kyls47_hizu33kuljKfrSWDMqFdARYLZoKIk5G64YgPZV",
    "gk_gzbca7cdwoj5_HFGCe0FPBjCglqA86K0poC5tvIXIvVsE17A2ow",
    "gk_h2e388k9dhl5_fV5kPZRFvoqa8vdlYZun2axyK786LcFf0dznUS",
    "gk_3dppb2o46wqn_Kwx9C8wu54KevW3qc1NjLOeUOOOONUBQ2DeHvO",
    "gk_ghaycj1ewsds_iGW5ga2yQA1dGWb6MjYslYFOrh8YSoqL1IonWn",
    "gk_9ldd9jb7ouk7_6eVsXTAPj0FZIL7mNLs9cfhka8QplzBD0SUQOV",
}
local routes = 10
local host = "bench.example.com"
local mode = os.getenv("BENCH_MODE") or "nginx"

local requests = {}
local n = 0
local i = 0

-- Runs in the main Lua state, once per thread: a thread number for init().
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

function init(args)
    -- Every (key, route) pair, keys varying fastest: 80 distinct requests.
    for r = 0, routes - 1 do
        for k = 1, #keys do
            local path = string.format("/v1/r%d/models", r)
            local auth = "Bearer " .. keys[k]
            local req
            if mode == "direct" then
                req = wrk.format("GET", "/authz", {
                    ["Host"] = "gatekeeper",
                    ["X-Original-Method"] = "GET",
                    ["X-Original-URI"] = path,
                    ["X-Original-Path"] = path,
                    ["X-Original-Host"] = host,
                    ["X-Real-IP"] = "127.0.0.1",
                    ["X-Request-ID"] = string.format("bench-%d-%d", r, k),
                    ["Authorization"] = auth,
                })
            else
                req = wrk.format("GET", path, {
                    ["Host"] = host,
                    ["Authorization"] = auth,
                })
            end
            n = n + 1
            requests[n] = req
        end
    end
    -- Threads start at different places in the rotation.
    i = ((id or 0) * 29) % n
end

function request()
    i = i % n + 1
    return requests[i]
end

function done(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
        "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        e.status, e.connect, e.read, e.write, e.timeout))
end
