import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { Deadlines } from "../../src/deadlines.ts";
import { silentLogger } from "../../src/log.ts";
import { Runtime } from "../../src/runtime.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import {
  NotSentError,
  type SendInit,
  type Transport,
  type UpstreamReply,
  type UpstreamTarget,
} from "../../src/transport/transport.ts";

/** A transport that fails every send with `error`, counting the sends. */
class FailingTransport implements Transport {
  readonly kind = "http1" as const;
  kindFor(): "http1" {
    return this.kind;
  }
  sends = 0;
  constructor(readonly error: unknown) {}
  send(_target: UpstreamTarget, _init: SendInit): Promise<UpstreamReply> {
    this.sends++;
    return Promise.reject(this.error);
  }
  close(): void {}
}

/**
 * A runtime with two upstreams (each with `upstreamExtra`) whose breakers would open after
 * two failures, balanced by response time, with three retries and no backoff.
 */
function runtime(transport: Transport, upstreamExtra = ""): Runtime {
  const upstream = (name: string) =>
    `  - name: ${name}
    url: "http://${name}.test/v1"
    breaker: {threshold: 0.5, minRequests: 2, interval: 60, cooldown: 60}
${upstreamExtra}`;
  const yaml = `httpServer:
  forwards: [{name: main, port: 0, defaultGroup: g}]
upstreams:
${upstream("a")}
${upstream("b")}
upstreamGroups:
  - name: g
    upstreams: [{name: a}, {name: b}]
    balance: {strategy: response_aware}
    httpClient: {retry: {attempts: 3, initial: 0}}
`;
  const loaded = parseConfig(yaml, "test.yaml", () => undefined);
  const clock = new FakeClock();
  return new Runtime(loaded.config, {
    clock,
    random: () => 0.5,
    log: silentLogger,
    deadlines: new Deadlines(clock),
    createTransport: () => transport,
  });
}

async function call(rt: Runtime, path = "/chat"): Promise<{ status: number; code: string }> {
  const response = await rt.forwards.get("main")!.handle(
    new Request(`http://proxy.test${path}`),
    "127.0.0.1",
  );
  const body = await response.json();
  return { status: response.status, code: body.error?.code };
}

function assertUntouched(rt: Runtime): void {
  for (const upstream of rt.upstreams.values()) {
    assert.equal(upstream.breaker.state(1_000_000), "closed", upstream.name);
    assert.equal(upstream.errors, 0, upstream.name);
    assert.equal(upstream.inFlight, 0, upstream.name);
  }
  const group = rt.groups.get("g")!;
  for (const member of group.members) {
    const stats = group.balancer.stats?.(member);
    // No sample learned: the success rate is untouched and no latency was recorded.
    assert.equal(stats?.inFlight, 0);
    assert.equal(stats?.successRate, 1);
    assert.equal(stats?.latencyMs, undefined);
  }
}

Deno.test("proxy: a request the transport refuses as the proxy's fault is a 500, sent once, no breaker or balancer effect", async () => {
  const transport = new FailingTransport(new NotSentError("proxy", "cannot encode the head"));
  const rt = runtime(transport);
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await call(rt), { status: 500, code: "internal_error" });
  }
  assert.equal(transport.sends, 5, "a request that was not sent was retried");
  assertUntouched(rt);
});

Deno.test("proxy: a request the transport refuses as the client's fault is a 400, not retried", async () => {
  const transport = new FailingTransport(new NotSentError("client", "fetch cannot send it"));
  const rt = runtime(transport);
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await call(rt), { status: 400, code: "invalid_request" });
  }
  assert.equal(transport.sends, 5);
  assertUntouched(rt);
});

Deno.test("proxy: a failure while building an attempt's headers never takes a lease or reaches the transport", async () => {
  const transport = new FailingTransport(new Error("must not be called"));
  const rt = runtime(transport);
  for (const member of rt.groups.get("g")!.members) {
    member.headers.build = () => {
      throw new TypeError("a bug while building headers");
    };
  }
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await call(rt), { status: 500, code: "internal_error" });
  }
  assert.equal(transport.sends, 0);
  for (const upstream of rt.upstreams.values()) assert.equal(upstream.requests, 0);
  assertUntouched(rt);
});

Deno.test("proxy: a rewrite that leaves the base path is a 400 invalid_path before any lease", async () => {
  const transport = new FailingTransport(new Error("must not be called"));
  const rewrite = `    path: {mode: append, rewrite: [{match: "^/up/(.*)", replace: "/../$1"}]}`;
  const rt = runtime(transport, rewrite);
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await call(rt, "/up/admin"), { status: 400, code: "invalid_path" });
  }
  assert.equal(transport.sends, 0);
  for (const upstream of rt.upstreams.values()) assert.equal(upstream.requests, 0);
  assertUntouched(rt);
});

Deno.test("proxy: an upstream connect failure still counts (the contrast)", async () => {
  const transport = new FailingTransport(new Error("connection refused"));
  const rt = runtime(transport);
  assert.equal((await call(rt)).status, 502);
  assert.ok(transport.sends > 1, "a connect failure is retried");
  const errors = [...rt.upstreams.values()].reduce((n, u) => n + u.errors, 0);
  assert.ok(errors > 0);
});

Deno.test("proxy: the proxy out of file descriptors is a 503 proxy_overloaded, not the upstream's failure", async () => {
  const transport = new FailingTransport(
    new TypeError("error sending request", {
      cause: new Error("Too many open files (os error 24)"),
    }),
  );
  const rt = runtime(transport);
  for (let i = 0; i < 3; i++) {
    const response = await rt.forwards.get("main")!.handle(
      new Request("http://proxy.test/chat"),
      "127.0.0.1",
    );
    assert.equal(response.status, 503);
    assert.equal(response.headers.get("retry-after"), "1");
    assert.equal((await response.json()).error.code, "proxy_overloaded");
  }
  assert.equal(transport.sends, 3, "sent once each: another upstream would fare no better");
  assertUntouched(rt);
});
