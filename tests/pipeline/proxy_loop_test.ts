/**
 * The proxy loop in-process: retries, failover, breakers, 429 cool-downs, rate limits, the
 * retry budget and shutdown, on a scripted transport with a fake clock. No sockets, no sleeps:
 * a retry wait moves the fake clock (or, with `realWait`, is a timer on it that the test
 * advances). (The cases that need real sockets stay in
 * tests/e2e/resilience_test.ts.)
 */
import assert from "node:assert/strict";
import { loopConfig, loopRuntime } from "../_helpers/loop_runtime.ts";
import { AttemptAbort } from "../../src/upstream/attempt.ts";

const FAST_RETRY = "httpClient: {retry: {attempts: 1, initial: 0}}";
const BREAKER =
  `breaker: {threshold: 0.5, minRequests: 4, interval: 10, cooldown: "500ms", maxRequests: 1}`;
const refused = { error: new TypeError("connection refused") };
/** Lets the event loop run once (a microtask spin would starve the request's I/O). */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("proxy loop: a 503 from the first upstream of two is retried on the second, with the same body", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"], { group: FAST_RETRY }));
  loop.transport.script("a", { status: 503 });
  const reply = await loop.request({ body: '{"model":"m","stream":false}' });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("x-upstream"), "b");
  assert.deepEqual(loop.transport.sent, ["a", "b"]);
  assert.deepEqual(loop.transport.bodies, [
    '{"model":"m","stream":false}',
    '{"model":"m","stream":false}',
  ]);
  assert.deepEqual(loop.waits, [0]);
});

Deno.test("proxy loop: a lone upstream's 503 is retried on the same upstream", async () => {
  const loop = loopRuntime(loopConfig(["a"], { group: FAST_RETRY }));
  loop.transport.script("a", { status: 503 });
  assert.equal((await loop.request()).status, 200);
  assert.deepEqual(loop.transport.sent, ["a", "a"]);
});

Deno.test("proxy loop: failover tries the upstreams in declared order, each once", async () => {
  const loop = loopRuntime(loopConfig(["a", "b", "c"], {
    group: "balance: {strategy: failover}\n    httpClient: {retry: {attempts: 3, initial: 0}}",
  }));
  loop.transport.script("a", refused);
  loop.transport.script("b", { status: 502 });
  const reply = await loop.request();
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("x-upstream"), "c");
  assert.deepEqual(loop.transport.sent, ["a", "b", "c"]);
  // Healthy again: failover goes back to the first.
  assert.equal((await loop.request()).headers.get("x-upstream"), "a");
});

Deno.test("proxy loop: an always-500 upstream trips its breaker, gets a half-open probe, then recovers", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"], { upstream: BREAKER, group: FAST_RETRY }));
  loop.transport.always("a", { status: 500 });
  const a = loop.runtime.upstreams.get("a")!;
  // Round robin comes back to A on every request until the breaker opens.
  for (let i = 0; i < 4; i++) {
    const reply = await loop.request();
    assert.equal(reply.status, 200);
    assert.equal(reply.headers.get("x-upstream"), "b");
  }
  assert.equal(loop.transport.count("a"), 4);
  assert.equal(a.breaker.state(loop.now), "open");
  for (let i = 0; i < 6; i++) assert.equal((await loop.request()).status, 200);
  assert.equal(loop.transport.count("a"), 4, "an open breaker still let traffic through");

  // After the cooldown: one probe, which fails → open again, no further traffic.
  loop.now += 600;
  assert.equal((await loop.request()).status, 200);
  assert.equal(loop.transport.count("a"), 5);
  assert.equal(a.breaker.state(loop.now), "open");
  for (let i = 0; i < 3; i++) assert.equal((await loop.request()).status, 200);
  assert.equal(loop.transport.count("a"), 5);

  // Healthy again: the next probe closes the breaker and A takes its share.
  loop.transport.always("a", undefined);
  loop.now += 600;
  const probe = await loop.request();
  assert.equal(probe.headers.get("x-upstream"), "a");
  assert.equal(a.breaker.state(loop.now), "closed");
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) seen.push((await loop.request()).headers.get("x-upstream")!);
  assert.deepEqual(seen.sort(), ["a", "a", "b", "b"]);
});

Deno.test("proxy loop: when the only upstream's breaker is open the proxy answers 503 at once", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    upstream: `breaker: {threshold: 0.5, minRequests: 4, interval: 10, cooldown: 30}`,
    group: "httpClient: {retry: {attempts: 0}}",
  }));
  loop.transport.always("a", { status: 500 });
  for (let i = 0; i < 4; i++) assert.equal((await loop.request()).status, 500);
  const reply = await loop.request();
  assert.equal(reply.status, 503);
  assert.equal(reply.code, "no_upstream_available");
  assert.equal(loop.transport.count("a"), 4);
});

Deno.test("proxy loop: a breaker opening during retries passes the last 5xx through, not a 503", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    upstream: `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: 30}`,
    group: "httpClient: {retry: {attempts: 3, initial: 0}}",
  }));
  loop.transport.always("a", { status: 500, body: '{"custom":"a"}' });
  const reply = await loop.request();
  assert.equal(reply.status, 500);
  assert.equal(reply.text, '{"custom":"a"}');
  assert.equal(loop.transport.count("a"), 2);
  const next = await loop.request();
  assert.equal(next.status, 503);
  assert.equal(next.code, "no_upstream_available");
});

Deno.test("proxy loop: upstream 400 and 404 pass through, are not retried and do not trip the breaker", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    upstream: `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: 30}`,
    group: "httpClient: {retry: {attempts: 3, initial: 0}}",
  }));
  for (const status of [400, 404, 400, 404]) {
    loop.transport.script("a", { status, body: `{"status":${status}}` });
    const reply = await loop.request();
    assert.equal(reply.status, status);
    assert.equal(reply.text, `{"status":${status}}`);
  }
  assert.equal(loop.transport.count("a"), 4);
  const a = loop.runtime.upstreams.get("a")!;
  assert.equal(a.breaker.state(loop.now), "closed");
  assert.equal(a.errors, 0);
});

Deno.test("proxy loop: when retries are exhausted the last upstream 5xx passes through as is", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"], { group: FAST_RETRY }));
  loop.transport.always("a", { status: 502, body: '{"custom":"from a"}' });
  loop.transport.always("b", { status: 503, body: '{"custom":"from b"}' });
  const reply = await loop.request();
  assert.equal(reply.status, 503);
  assert.equal(reply.text, '{"custom":"from b"}');
  assert.deepEqual(loop.transport.sent, ["a", "b"]);
});

Deno.test("proxy loop: a lone upstream's 500 is retried `attempts` times with backoff, then passed through", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    group: "httpClient: {retry: {attempts: 2, initial: 100}}",
  }));
  loop.transport.always("a", { status: 500 });
  assert.equal((await loop.request()).status, 500);
  assert.equal(loop.transport.count("a"), 3);
  // Equal jitter at random 0.5: ¾ of 100 ms, then of 200 ms.
  assert.deepEqual(loop.waits, [75, 150]);
});

Deno.test("proxy loop: the retry wait is a timer on the injected clock; the retry goes when it fires", async () => {
  const loop = loopRuntime(
    loopConfig(["a"], { group: "httpClient: {retry: {attempts: 1, initial: 100}}" }),
    { realWait: true },
  );
  loop.transport.script("a", { status: 500 });
  const pending = loop.request();
  // Equal jitter at random 0.5: ¾ of 100 ms. The attempt's deadlines were cancelled.
  while (!loop.clock.dueIn.includes(75)) await tick();
  assert.deepEqual(loop.clock.dueIn, [75]);
  loop.clock.advance(74);
  await tick();
  assert.equal(loop.transport.count("a"), 1);
  loop.clock.advance(1);
  const reply = await pending;
  assert.equal(reply.status, 200);
  assert.equal(loop.transport.count("a"), 2);
  assert.equal(loop.clock.pending, 0);
});

Deno.test("proxy loop: a shutdown cancels the retry wait's timer on the injected clock", async () => {
  const loop = loopRuntime(
    loopConfig(["a"], {
      group: `httpClient: {retry: {attempts: 2, initial: "5s", budget: "30s"}}`,
    }),
    { realWait: true },
  );
  loop.transport.always("a", { status: 503 });
  const pending = loop.request();
  while (!loop.clock.dueIn.includes(3_750)) await tick();
  loop.runtime.shutdown(new AttemptAbort("shutdown", "the proxy is shutting down"));
  const reply = await pending;
  assert.equal(reply.status, 503);
  assert.equal(reply.code, "shutting_down");
  assert.equal(loop.clock.pending, 0);
  assert.equal(loop.transport.count("a"), 1);
});

Deno.test("proxy loop: the retry budget bounds the time spent retrying", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    group: `httpClient: {retry: {attempts: 5, initial: 200, budget: "300ms"}}`,
  }));
  loop.transport.always("a", { status: 503 });
  assert.equal((await loop.request()).status, 503);
  // 150 ms, then 300 ms more would end past the 300 ms budget.
  assert.deepEqual(loop.waits, [150]);
  assert.equal(loop.transport.count("a"), 2);
});

Deno.test("proxy loop: a 429 with Retry-After keeps that upstream out until it passes (fake clock)", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"], { group: FAST_RETRY }));
  loop.transport.script("a", { status: 429, headers: { "retry-after-ms": "300" } });
  const first = await loop.request();
  assert.equal(first.headers.get("x-upstream"), "b");
  // One upstream's Retry-After does not delay a retry elsewhere.
  assert.deepEqual(loop.waits, [0]);
  // Round robin would alternate; while A cools down, everything goes to B.
  for (let i = 0; i < 5; i++) {
    loop.now += 50;
    assert.equal((await loop.request()).headers.get("x-upstream"), "b");
  }
  loop.now += 50; // 300 ms after the 429
  const seen = [
    (await loop.request()).headers.get("x-upstream"),
    (await loop.request()).headers
      .get("x-upstream"),
  ];
  assert.ok(seen.includes("a"), `a never came back: ${seen}`);
  assert.equal(loop.transport.count("a"), 2);
});

Deno.test("proxy loop: a lone upstream's 429 is retried after its Retry-After, or passed through", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    group: `httpClient: {retry: {attempts: 2, initial: 10, budget: "1s"}}`,
  }));
  loop.transport.script("a", { status: 429, headers: { "retry-after-ms": "200" } });
  const reply = await loop.request();
  assert.equal(reply.status, 200);
  assert.deepEqual(loop.waits, [200]);
  assert.equal(loop.transport.count("a"), 2);

  // A Retry-After beyond the budget: the upstream's own 429 reaches the client, no wait.
  loop.transport.script("a", { status: 429, headers: { "retry-after": "30" } });
  const limited = await loop.request();
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "30");
  assert.equal(limited.headers.get("x-upstream"), "a");
  assert.deepEqual(loop.waits, [200]);
  assert.equal(loop.transport.count("a"), 3);
});

Deno.test("proxy loop: a Retry-After HTTP date is read on the clock's wall time", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    group: `httpClient: {retry: {attempts: 1, initial: 10, budget: "5s"}}`,
  }));
  // The fake monotonic clock is at 1 000 000 ms; its wall clock says 2030-01-01T00:00:00Z.
  assert.equal(new Date(loop.clock.wallNow()).toISOString(), "2030-01-01T00:00:00.000Z");
  loop.transport.script("a", {
    status: 429,
    headers: { "retry-after": "Tue, 01 Jan 2030 00:00:02 GMT" },
  });
  assert.equal((await loop.request()).status, 200);
  assert.deepEqual(loop.waits, [2_000]);
});

Deno.test("proxy loop: a lone upstream at its rate limit answers 429 upstream_rate_limited", async () => {
  const loop = loopRuntime(loopConfig(["a"], { upstream: "ratelimit: {perSecond: 1, burst: 2}" }));
  assert.equal((await loop.request()).status, 200);
  assert.equal((await loop.request()).status, 200);
  const reply = await loop.request();
  assert.equal(reply.status, 429);
  assert.equal(reply.code, "upstream_rate_limited");
  assert.equal(reply.headers.get("retry-after"), "1");
  assert.equal(loop.transport.count("a"), 2);
  loop.now += 1_000;
  assert.equal((await loop.request()).status, 200);
});

Deno.test("proxy loop: an upstream at its rate limit is skipped while another has room", async () => {
  const yaml = loopConfig(["a", "b"]).replace(
    `url: "http://a.test/v1/chat/completions"\n`,
    `url: "http://a.test/v1/chat/completions"\n    ratelimit: {perSecond: 0.1, burst: 2}\n`,
  );
  const loop = loopRuntime(yaml);
  for (let i = 0; i < 8; i++) assert.equal((await loop.request()).status, 200);
  assert.equal(loop.transport.count("a"), 2);
  assert.equal(loop.transport.count("b"), 6);
});

Deno.test("proxy loop: a shutdown during a retry wait answers 503 shutting_down and sends nothing more", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    group: `httpClient: {retry: {attempts: 2, initial: "5s", budget: "30s"}}`,
  }));
  loop.transport.always("a", { status: 503 });
  loop.holdWaits = true;
  const pending = loop.request();
  while (loop.waits.length === 0) await tick();
  assert.equal(loop.runtime.inFlight, 1);
  loop.runtime.shutdown(new AttemptAbort("shutdown", "the proxy is shutting down"));
  const reply = await pending;
  assert.equal(reply.status, 503);
  assert.equal(reply.code, "shutting_down");
  assert.equal(loop.transport.count("a"), 1);
  assert.equal(loop.runtime.inFlight, 0);
  await loop.runtime.drained();
});

Deno.test("proxy loop: a shutdown while waiting for response headers answers 503 and counts against nobody", async () => {
  const loop = loopRuntime(loopConfig(["a"], {
    upstream: `breaker: {threshold: 0.5, minRequests: 1, interval: 10, cooldown: 30}`,
    group: "httpClient: {retry: {attempts: 2, initial: 0}}",
  }));
  loop.transport.script("a", "hang");
  const pending = loop.request();
  while (loop.transport.sent.length === 0) await tick();
  loop.runtime.shutdown(new AttemptAbort("shutdown", "the proxy is shutting down"));
  const reply = await pending;
  assert.equal(reply.status, 503);
  assert.equal(reply.code, "shutting_down");
  assert.equal(loop.transport.count("a"), 1, "a shutdown is not retried");
  const a = loop.runtime.upstreams.get("a")!;
  assert.equal(a.breaker.state(loop.now), "closed");
  assert.equal(a.inFlight, 0);
});

Deno.test("proxy loop: a client that leaves while the upstream hangs is a 499, and costs no retry", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"], { group: FAST_RETRY }));
  loop.transport.script("a", "hang");
  const client = new AbortController();
  const pending = loop.request({ signal: client.signal });
  while (loop.transport.sent.length === 0) await tick();
  client.abort();
  const reply = await pending;
  assert.equal(reply.status, 499);
  assert.equal(reply.code, "client_disconnected");
  assert.deepEqual(loop.transport.sent, ["a"]);
  assert.equal(loop.runtime.upstreams.get("a")!.errors, 0);
});

Deno.test("proxy loop: request ids come from the injected id source", async () => {
  let n = 0;
  const loop = loopRuntime(loopConfig(["a"]), {
    ids: {
      requestId: () => `req-${++n}`,
      traceId: () => "1".repeat(32),
      spanId: () => "2".repeat(16),
    },
  });
  assert.equal((await loop.request()).headers.get("x-request-id"), "req-1");
  assert.equal((await loop.request()).headers.get("x-request-id"), "req-2");
});

Deno.test("proxy loop: a member that refuses its lease after being chosen hands the request to another, no retry spent", async () => {
  const loop = loopRuntime(loopConfig(["a", "b"]));
  const a = loop.runtime.upstreams.get("a")!;
  // As when another worker or instance took a's last shared token between choice and lease.
  a.acquire = () => undefined;
  const reply = await loop.request();
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("x-upstream"), "b");
  assert.deepEqual(loop.transport.sent, ["b"]);
  assert.deepEqual(loop.waits, [], "no retry wait");
  // Both refuse: the group has no upstream for it.
  loop.runtime.upstreams.get("b")!.acquire = () => undefined;
  assert.equal((await loop.request()).status, 503);
});
