-- POSTs the JSON body in $BENCH_BODY (set by bench/run.ts) to the URL given to wrk, with the
-- extra headers in $BENCH_HEADERS ("Name: value" lines; e.g. a gateway's routing headers), e.g.
--   BENCH_BODY='{"model":"m","messages":[{"role":"user","content":"hi"}]}' \
--     wrk -t1 -c50 -d10s --latency -s bench/wrk/post.lua http://127.0.0.1:3000/v1/chat/completions
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
