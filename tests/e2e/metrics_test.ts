/**
 * Metrics move correctly after real traffic; the access log has one line per request with
 * the documented fields; traceparent travels upstream; the exposition stays parseable.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, type PromFamily, sampleValue } from "../_helpers/prom_parser.ts";
import { chat, contentEvents, delay, readEvents } from "../_helpers/raw_http.ts";

/**
 * Forward `main` → group `g` by default; path prefixes pick the other groups:
 * `/dead` (connection refused), `/slow` (200 ms first-byte deadline), `/fragile` (breaker opens
 * on one failure), `/retry` (two upstreams, one retry), `/echo` (the mock's echo endpoint),
 * `/ulimit` (an upstream with one token). Forward `limited` has a per-IP limit of one.
 */
function config(mock: MockUpstream, deadPort: number): string {
  const chatUrl = `${mock.url}/v1/chat/completions`;
  return `httpServer:
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
      routing:
        - {path: "/dead/*", targetGroup: dead}
        - {path: "/slow/*", targetGroup: slow}
        - {path: "/fragile/*", targetGroup: fragile}
        - {path: "/retry/*", targetGroup: retry}
        - {path: "/echo/*", targetGroup: echo}
        - {path: "/ulimit/*", targetGroup: ulimit}
    - name: limited
      port: 0
      address: 127.0.0.1
      defaultGroup: g
      ratelimit: {perSecond: 0.001, burst: 1}
  admin: {port: 0}
upstreams:
  - {name: u, url: "${chatUrl}"}
  - {name: dead, url: "http://127.0.0.1:${deadPort}/v1/chat/completions"}
  - {name: slow, url: "${chatUrl}"}
  - {name: fragile, url: "${chatUrl}", breaker: {minRequests: 1, threshold: 0.5, cooldown: 60}}
  - {name: r1, url: "${chatUrl}"}
  - {name: r2, url: "${chatUrl}"}
  - {name: echo, url: "${mock.url}/echo"}
  - {name: ulimit, url: "${chatUrl}", ratelimit: {perSecond: 0.001, burst: 1}}
upstreamGroups:
  - {name: g, upstreams: [{name: u}], httpClient: {retry: {attempts: 0}}}
  - {name: dead, upstreams: [{name: dead}], httpClient: {retry: {attempts: 0}}}
  - name: slow
    upstreams: [{name: slow}]
    httpClient: {retry: {attempts: 0}, timeout: {firstByte: "200ms"}}
  - {name: fragile, upstreams: [{name: fragile}], httpClient: {retry: {attempts: 0}}}
  - name: retry
    upstreams: [{name: r1}, {name: r2}]
    balance: {strategy: failover}
    httpClient: {retry: {attempts: 1, initial: 10}}
  - {name: echo, upstreams: [{name: echo}]}
  - {name: ulimit, upstreams: [{name: ulimit}], httpClient: {retry: {attempts: 0}}}
`;
}

interface Setup {
  proxy: TestProxy;
  mock: MockUpstream;
  scrape(): Promise<Map<string, PromFamily>>;
  post(path: string, body?: string, headers?: Record<string, string>): Promise<Response>;
}

async function withProxy(
  fn: (s: Setup) => Promise<void>,
  options: { json?: boolean; logLevel?: "debug" | "info" | "warn" } = {},
): Promise<void> {
  const mock = await startMockUpstream();
  // The dead upstream's port stays taken until the proxy's own listeners are bound: a port
  // freed earlier could be handed to one of them, and "dead" would then answer.
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = await startTestProxy(config(mock, dead.addr.port), {
    captureLogs: true,
    json: options.json ?? true,
    logLevel: options.logLevel ?? "info",
  }).finally(() => dead.close());
  const setup: Setup = {
    proxy,
    mock,
    async scrape() {
      const response = await fetch(`${proxy.adminUrl()}/metrics`);
      assert.equal(response.status, 200);
      return parsePrometheusText(await response.text());
    },
    post(path, body = chat(), headers = {}) {
      return fetch(`${proxy.url()}${path}`, { method: "POST", body, headers });
    },
  };
  try {
    await fn(setup);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

/** A sample's value, 0 when the series does not exist yet. */
function value(m: Map<string, PromFamily>, name: string, labels: Record<string, string>): number {
  return sampleValue(m, name, labels) ?? 0;
}

/** Token series of group g, upstream u, for requests whose model no config names. */
const G_U_OTHER = { group: "g", upstream: "u", model: "other" };

async function drain(response: Response): Promise<string> {
  return await response.text();
}

Deno.test("metrics: request, duration, in-flight, upstream and token metrics after real traffic", async () => {
  await withProxy(async ({ proxy, scrape, post }) => {
    let m = await scrape();
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "200" }),
      0,
    );

    // Three JSON completions (usage: prompt 10, completion 5 each).
    for (let i = 0; i < 3; i++) {
      const r = await post("/v1/chat/completions");
      assert.equal(r.status, 200);
      await drain(r);
    }
    m = await scrape();
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "200" }),
      3,
    );
    assert.equal(value(m, "llmproxy_http_request_duration_seconds_count", { forward: "main" }), 3);
    assert.equal(
      value(m, "llmproxy_upstream_requests_total", { group: "g", upstream: "u", status: "200" }),
      3,
    );
    assert.equal(
      value(m, "llmproxy_upstream_first_byte_seconds_count", { group: "g", upstream: "u" }),
      3,
    );
    assert.equal(
      value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "prompt" }),
      30,
    );
    assert.equal(
      value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "completion" }),
      15,
    );
    assert.equal(value(m, "llmproxy_inflight_requests", { forward: "main" }), 0);

    // A slow stream with a usage chunk: in flight while it runs, duration measured to its end.
    const start = performance.now();
    const streamed = await post(
      "/v1/chat/completions",
      JSON.stringify({
        model: "m",
        messages: [],
        stream: true,
        stream_options: { include_usage: true },
      }),
      { "x-mock-chunks": "4", "x-mock-delay-ms": "100" },
    );
    assert.equal(streamed.status, 200);
    m = await scrape();
    assert.equal(value(m, "llmproxy_inflight_requests", { forward: "main" }), 1);
    // The response head is out: the request is not counted as finished yet.
    assert.equal(value(m, "llmproxy_http_request_duration_seconds_count", { forward: "main" }), 3);
    const events = await readEvents(streamed.body!, start);
    assert.equal(contentEvents(events).length, 5, "4 content chunks + the usage chunk");
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    const elapsed = (performance.now() - start) / 1000;
    await delay(20);
    m = await scrape();
    assert.equal(value(m, "llmproxy_inflight_requests", { forward: "main" }), 0);
    assert.equal(value(m, "llmproxy_http_request_duration_seconds_count", { forward: "main" }), 4);
    const durationSum = value(m, "llmproxy_http_request_duration_seconds_sum", { forward: "main" });
    assert.ok(durationSum >= 0.28, `duration counts to the end of the body: ${durationSum}`);
    assert.ok(durationSum <= elapsed + 1, `${durationSum} vs ${elapsed}`);
    // The streamed stream's usage chunk: prompt 10, completion 4.
    assert.equal(
      value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "prompt" }),
      40,
    );
    assert.equal(
      value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "completion" }),
      19,
    );
    // First byte is well before the end: every first-byte observation is under the stream time.
    const fbSum = value(m, "llmproxy_upstream_first_byte_seconds_sum", {
      group: "g",
      upstream: "u",
    });
    assert.ok(fbSum < 0.25, `first byte sum ${fbSum}`);

    // A stream without include_usage adds no tokens.
    await drain(await post("/v1/chat/completions", chat(true)));
    m = await scrape();
    assert.equal(
      value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "prompt" }),
      40,
    );

    // Other methods and statuses get their own series; unknown methods collapse to OTHER.
    await drain(await fetch(`${proxy.url()}/echo/x`));
    await drain(await fetch(`${proxy.url()}/echo/x`, { method: "PURGE" }));
    await drain(await post("/v1/chat/completions", "{not json"));
    m = await scrape();
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "GET", status: "200" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "OTHER", status: "200" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "400" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_upstream_requests_total", { group: "g", upstream: "u", status: "400" }),
      1,
    );
    // A 4xx is not an upstream error.
    assert.equal(
      value(m, "llmproxy_upstream_errors_total", { group: "g", upstream: "u", kind: "status" }),
      0,
    );

    const rss = sampleValue(m, "process_resident_memory_bytes");
    assert.ok(rss !== undefined && rss > 1_000_000, `rss ${rss}`);
  });
});

Deno.test("metrics: time to first token and inter-token gaps of a stream with delays; none for JSON", async () => {
  await withProxy(async ({ scrape, post }) => {
    const g = { group: "g", upstream: "u" };
    const ttft = (m: Map<string, PromFamily>, sample: "count" | "sum") =>
      value(m, `llmproxy_time_to_first_token_seconds_${sample}`, g);
    const gaps = (m: Map<string, PromFamily>, sample: "count" | "sum") =>
      value(m, `llmproxy_inter_token_seconds_${sample}`, g);

    // JSON answers record no token timings, nor do compressed streams (their bytes are not
    // events to the proxy).
    await drain(await post("/v1/chat/completions"));
    const gzipped = await post("/v1/chat/completions", chat(true), { "x-mock-gzip": "1" });
    assert.equal(gzipped.headers.get("content-type"), "text/event-stream");
    assert.match(await gzipped.text(), /data: \[DONE\]/);
    let m = await scrape();
    for (const name of ["llmproxy_time_to_first_token_seconds", "llmproxy_inter_token_seconds"]) {
      assert.equal(sampleValue(m, `${name}_count`, g), undefined, `${name}: no series yet`);
    }

    // 100 ms before the first event, then 4 content events 50 ms apart, the usage event right
    // after the last one, then [DONE]: 5 data events, so one first token and 4 gaps.
    const start = performance.now();
    const streamed = await post(
      "/v1/chat/completions",
      JSON.stringify({
        model: "m",
        messages: [],
        stream: true,
        stream_options: { include_usage: true },
      }),
      { "x-mock-chunks": "4", "x-mock-delay-ms": "50", "x-mock-first-delay-ms": "100" },
    );
    assert.equal(streamed.status, 200);
    const events = await readEvents(streamed.body!, start);
    const elapsed = (performance.now() - start) / 1000;
    assert.equal(contentEvents(events).length, 5);
    await delay(20);
    m = await scrape();
    assert.equal(ttft(m, "count"), 1);
    assert.ok(ttft(m, "sum") >= 0.095, `first token after the 100 ms pause: ${ttft(m, "sum")}`);
    assert.ok(ttft(m, "sum") <= elapsed, `${ttft(m, "sum")} vs ${elapsed}`);
    assert.equal(gaps(m, "count"), 4, "one gap per data event after the first; [DONE] is none");
    // The sum of the gaps is the time from the first data event to the last: 3 pauses of 50 ms.
    assert.ok(gaps(m, "sum") >= 0.145, `gaps sum ${gaps(m, "sum")}`);
    assert.ok(gaps(m, "sum") + ttft(m, "sum") <= elapsed, `${gaps(m, "sum")} vs ${elapsed}`);
    assert.ok(
      value(m, "llmproxy_inter_token_seconds_bucket", { ...g, le: "0.03" }) <= 1,
      "at most the usage event follows its predecessor within 30 ms",
    );
    assert.equal(value(m, "llmproxy_inter_token_seconds_bucket", { ...g, le: "+Inf" }), 4);
    // A request that no model routing matched counts its tokens under model="other".
    assert.equal(value(m, "llmproxy_tokens_total", { ...G_U_OTHER, type: "prompt" }), 20);
    assert.deepEqual(
      m.get("llmproxy_tokens_total")!.samples.map((s) => s.labels.model),
      ["other", "other"],
    );
  });
});

Deno.test("metrics: upstream errors by kind, retries, rate-limit rejections, breaker state and transitions", async () => {
  await withProxy(async ({ proxy, mock, scrape, post }) => {
    const errors = (m: Map<string, PromFamily>, group: string, upstream: string, kind: string) =>
      value(m, "llmproxy_upstream_errors_total", { group, upstream, kind });

    // connect: nothing listens on the dead upstream's port.
    const refused = await post("/dead/x");
    assert.equal(refused.status, 502, await refused.text());
    // timeout: the mock answers after 2 s, the first-byte deadline is 200 ms.
    const timedOut = await post("/slow/x", chat(), { "x-mock-hang-ms": "2000" });
    assert.equal(timedOut.status, 504, await timedOut.text());
    // stream: the body breaks after two chunks.
    const cut = await post("/v1/chat/completions", chat(true), { "x-mock-cut-after": "2" });
    assert.equal(cut.status, 200);
    const cutText = await cut.text().catch((e) => String(e));
    assert.ok(!cutText.includes("[DONE]"), cutText);
    // status: a 503 from the only upstream, no retries in this group.
    const unavailable = await post("/v1/chat/completions", chat(), { "x-mock-status": "503" });
    assert.equal(unavailable.status, 503);
    await drain(unavailable);
    await delay(20);

    let m = await scrape();
    assert.equal(errors(m, "dead", "dead", "connect"), 1);
    assert.equal(errors(m, "slow", "slow", "timeout"), 1);
    assert.equal(errors(m, "g", "u", "stream"), 1);
    assert.equal(errors(m, "g", "u", "status"), 1);
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "502" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "504" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_http_requests_total", { forward: "main", method: "POST", status: "503" }),
      1,
    );
    assert.equal(value(m, "llmproxy_retries_total", { group: "g" }), 0);

    // retry: the first upstream answers 500 once, the retry goes to the second.
    mock.script({ status: 500 });
    const retried = await post("/retry/x");
    assert.equal(retried.status, 200);
    await drain(retried);
    m = await scrape();
    assert.equal(value(m, "llmproxy_retries_total", { group: "retry" }), 1);
    assert.equal(errors(m, "retry", "r1", "status"), 1);
    assert.equal(
      value(m, "llmproxy_upstream_requests_total", {
        group: "retry",
        upstream: "r1",
        status: "500",
      }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_upstream_requests_total", {
        group: "retry",
        upstream: "r2",
        status: "200",
      }),
      1,
    );

    // Rate limits: the `limited` forward allows one request per client; `ulimit` has one token.
    const limitedUrl = proxy.url("limited");
    const first = await fetch(`${limitedUrl}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
    });
    assert.equal(first.status, 200);
    await drain(first);
    const second = await fetch(`${limitedUrl}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
    });
    assert.equal(second.status, 429);
    await drain(second);
    assert.equal((await post("/ulimit/x")).status, 200);
    const upstreamLimited = await post("/ulimit/x");
    assert.equal(upstreamLimited.status, 429);
    await drain(upstreamLimited);
    m = await scrape();
    assert.equal(
      value(m, "llmproxy_ratelimit_rejections_total", { scope: "forward", name: "limited" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_ratelimit_rejections_total", { scope: "upstream", name: "ulimit" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_http_requests_total", {
        forward: "limited",
        method: "POST",
        status: "429",
      }),
      1,
    );

    // Breaker: closed (0) at start; one 500 trips it (1) and the transition is counted.
    assert.equal(
      sampleValue(m, "llmproxy_circuit_breaker_state", { upstream: "fragile" }),
      0,
    );
    const tripped = await post("/fragile/x", chat(), { "x-mock-status": "500" });
    assert.equal(tripped.status, 500);
    await drain(tripped);
    const rejected = await post("/fragile/x");
    assert.equal(rejected.status, 503);
    await drain(rejected);
    m = await scrape();
    assert.equal(
      value(m, "llmproxy_circuit_breaker_state", { upstream: "fragile" }),
      1,
    );
    assert.equal(
      value(m, "llmproxy_circuit_breaker_transitions_total", {
        upstream: "fragile",
        from: "closed",
        to: "open",
      }),
      1,
    );
    // Every other breaker is still closed.
    for (const sample of m.get("llmproxy_circuit_breaker_state")!.samples) {
      assert.deepEqual(Object.keys(sample.labels), ["upstream"], "labelled by upstream only");
      if (sample.labels.upstream !== "fragile") {
        assert.equal(sample.value, 0, JSON.stringify(sample));
      }
    }
    assert.equal(value(m, "llmproxy_inflight_requests", { forward: "main" }), 0);
    assert.equal(value(m, "llmproxy_inflight_requests", { forward: "limited" }), 0);
  });
});

Deno.test("access log: one JSON line per request with the documented fields", async () => {
  await withProxy(async ({ proxy, post }) => {
    const before = proxy.logs.length;
    const ok = await post("/v1/chat/completions", chat(), { "x-request-id": "req-access-1" });
    await drain(ok);
    const stream = await post(
      "/v1/chat/completions",
      JSON.stringify({ model: "m", stream: true, stream_options: { include_usage: true } }),
      { "x-request-id": "req-access-2", "x-forwarded-for": "203.0.113.9" },
    );
    await drain(stream);
    await drain(await post("/dead/x", chat(), { "x-request-id": "req-access-3" }));
    await delay(20);
    const access = proxy.logs.slice(before).map((line) => JSON.parse(line))
      .filter((record) => record.log === "access");
    assert.equal(access.length, 3, proxy.logs.slice(before).join(""));
    const [a, b, c] = access;
    for (const record of access) {
      assert.equal(record.level, "info");
      assert.equal(record.forward, "main");
      assert.equal(
        record.clientIp,
        "127.0.0.1",
        "X-Forwarded-For from an untrusted peer is ignored",
      );
      assert.equal(typeof record.durationMs, "number");
      assert.equal(typeof record.bytes, "number");
      assert.equal(record.attempts, 1);
    }
    assert.equal(a.requestId, "req-access-1");
    assert.equal(a.group, "g");
    assert.equal(a.upstream, "u");
    assert.equal(a.status, 200);
    assert.equal(typeof a.firstByteMs, "number");
    assert.ok(a.bytes > 0);
    assert.deepEqual(a.tokens, { prompt: 10, completion: 5 });

    assert.equal(b.requestId, "req-access-2");
    assert.equal(b.status, 200);
    assert.deepEqual(b.tokens, { prompt: 10, completion: 5 });
    assert.ok(b.bytes > 0);

    assert.equal(c.requestId, "req-access-3");
    assert.equal(c.group, "dead");
    assert.equal(c.upstream, "dead");
    assert.equal(c.status, 502);
  });
});

Deno.test("access log: text format", async () => {
  await withProxy(async ({ proxy, post }) => {
    const before = proxy.logs.length;
    await drain(await post("/v1/chat/completions"));
    await delay(10);
    const lines = proxy.logs.slice(before);
    const access = lines.filter((line) => line.includes("log=access"));
    assert.equal(access.length, 1, lines.join(""));
    assert.match(access[0]!, / INFO {2}request /);
    assert.match(access[0]!, / status=200 /);
    assert.match(access[0]!, / requestId=\S+ /);
  }, { json: false });
});

Deno.test("access log: nothing at warn level", async () => {
  await withProxy(async ({ proxy, post }) => {
    await drain(await post("/v1/chat/completions"));
    await delay(10);
    assert.ok(!proxy.logs.some((line) => line.includes('"log":"access"')), proxy.logs.join(""));
  }, { logLevel: "warn" });
});

Deno.test("traceparent: the client's trace id continues with a new parent; one is created when absent or malformed", async () => {
  await withProxy(async ({ proxy, mock }) => {
    const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = "00f067aa0ba902b7";
    const shape = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
    const echo = async (traceparent?: string) => {
      const response = await fetch(`${proxy.url()}/echo/t`, {
        headers: traceparent === undefined ? {} : { traceparent },
      });
      assert.equal(response.status, 200);
      const body = await response.json();
      const sent = body.headers.traceparent as string;
      const match = shape.exec(sent);
      assert.ok(match, `traceparent at the upstream: ${sent}`);
      return { traceId: match[1]!, parentId: match[2]! };
    };

    const continued = await echo(`00-${trace}-${parent}-01`);
    assert.equal(continued.traceId, trace);
    assert.notEqual(continued.parentId, parent);

    const created = await echo();
    assert.notEqual(created.traceId, trace);
    assert.notEqual(created.traceId, "0".repeat(32));

    for (const bad of ["garbage", `00-${trace}-${parent}`, `00-${"0".repeat(32)}-${parent}-01`]) {
      const fresh = await echo(bad);
      assert.notEqual(fresh.traceId, trace, bad);
      assert.notEqual(fresh.traceId, "0".repeat(32), bad);
    }
    assert.ok(mock.requests.length >= 5);
  });
});

Deno.test("metrics: the exposition parses strictly after mixed traffic, with HELP and TYPE for every family", async () => {
  await withProxy(async ({ proxy, scrape, post }) => {
    await Promise.all([
      post("/v1/chat/completions").then(drain),
      post("/v1/chat/completions", chat(true)).then(drain),
      post("/dead/x").then(drain),
      post("/fragile/x", chat(), { "x-mock-status": "500" }).then(drain),
      post("/ulimit/x").then(drain),
      post("/ulimit/x").then(drain),
      fetch(`${proxy.url("limited")}/x`, { method: "POST", body: chat() }).then(drain),
      fetch(`${proxy.url("limited")}/x`, { method: "POST", body: chat() }).then(drain),
    ]);
    const text = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
    const m = parsePrometheusText(text);
    for (
      const family of [
        "llmproxy_http_requests_total",
        "llmproxy_http_request_duration_seconds",
        "llmproxy_inflight_requests",
        "llmproxy_upstream_requests_total",
        "llmproxy_upstream_first_byte_seconds",
        "llmproxy_upstream_errors_total",
        "llmproxy_retries_total",
        "llmproxy_ratelimit_rejections_total",
        "llmproxy_circuit_breaker_state",
        "llmproxy_circuit_breaker_transitions_total",
        "llmproxy_tokens_total",
        "llmproxy_time_to_first_token_seconds",
        "llmproxy_inter_token_seconds",
        "llmproxy_config_reloads_total",
        "process_resident_memory_bytes",
      ]
    ) {
      assert.ok(text.includes(`# HELP ${family} `), family);
      assert.ok(text.includes(`# TYPE ${family} `), family);
      assert.ok(m.has(family), family);
    }
    const again = await scrape();
    assert.ok(again.size >= m.size);
  });
});
