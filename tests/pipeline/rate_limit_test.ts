import assert from "node:assert/strict";
import { clientStage } from "../../src/pipeline/rate_limit.ts";
import { RateLimitedError } from "../../src/pipeline/errors.ts";
import { ClientIpResolver } from "../../src/server/client_ip.ts";
import { KeyedLimiter } from "../../src/resilience/token_bucket.ts";
import { testContext } from "../_helpers/request_context.ts";

function setup(options: { trusted?: string[]; limit?: boolean } = {}) {
  const clock = {
    t: 1_000_000,
    now() {
      return this.t;
    },
  };
  let rejected = 0;
  const stage = clientStage({
    resolver: new ClientIpResolver(options.trusted ?? []),
    limiter: options.limit === false ? undefined : new KeyedLimiter({ perSecond: 1, burst: 2 }),
    clock,
    onReject: () => rejected++,
  });
  const call = (peer = "127.0.0.1", xff?: string) => {
    const ctx = testContext(
      new Request("http://proxy.test/v1/chat", {
        headers: xff === undefined ? {} : { "x-forwarded-for": xff },
      }),
      peer,
    );
    return {
      ctx,
      response: stage(ctx, () => Promise.resolve(new Response("ok"))),
    };
  };
  return { clock, call, rejected: () => rejected };
}

Deno.test("clientStage() sets ctx.clientIp from the peer or a trusted X-Forwarded-For", async () => {
  const { call } = setup({ trusted: ["10.0.0.0/8"], limit: false });
  const direct = call("203.0.113.1", "1.1.1.1");
  await (await direct.response).body?.cancel();
  assert.equal(direct.ctx.clientIp, "203.0.113.1");
  const proxied = call("10.0.0.1", "1.1.1.1");
  await (await proxied.response).body?.cancel();
  assert.equal(proxied.ctx.clientIp, "1.1.1.1");
});

Deno.test("clientStage() without a limit adds no X-RateLimit headers", async () => {
  const { call } = setup({ limit: false });
  const { ctx, response } = call();
  await (await response).body?.cancel();
  assert.equal(new Headers(ctx.responseHeaders).has("x-ratelimit-limit"), false);
});

Deno.test("clientStage() adds X-RateLimit-* to allowed responses", async () => {
  const { call } = setup();
  // The stage hands the headers to the proxy, which sets them on whatever response follows.
  const first = call();
  await (await first.response).body?.cancel();
  const firstHeaders = new Headers(first.ctx.responseHeaders);
  assert.equal(firstHeaders.get("x-ratelimit-limit"), "2");
  assert.equal(firstHeaders.get("x-ratelimit-remaining"), "1");
  assert.equal(firstHeaders.get("x-ratelimit-reset"), "1");
  const second = call();
  await (await second.response).body?.cancel();
  const secondHeaders = new Headers(second.ctx.responseHeaders);
  assert.equal(secondHeaders.get("x-ratelimit-remaining"), "0");
  assert.equal(secondHeaders.get("x-ratelimit-reset"), "2");
});

Deno.test("clientStage() rejects past the burst with 429, Retry-After and X-RateLimit-*", async () => {
  const { call, clock, rejected } = setup();
  await (await call().response).body?.cancel();
  await (await call().response).body?.cancel();
  clock.t += 400;
  await assert.rejects(call().response, (error) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.status, 429);
    assert.equal(error.code, "rate_limit_exceeded");
    assert.deepEqual(error.headers, {
      "x-ratelimit-limit": "2",
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": "2",
      "retry-after": "1",
    });
    assert.match(error.message, /127\.0\.0\.1/);
    return true;
  });
  assert.equal(rejected(), 1);
  // One token back after a second.
  clock.t += 600;
  const again = await call().response;
  assert.equal(again.status, 200);
  await again.body?.cancel();
});

Deno.test("clientStage() keys the limit by client IP, never by an untrusted header", async () => {
  const { call } = setup({ trusted: ["10.0.0.0/8"] });
  for (let i = 0; i < 2; i++) {
    await (await call("203.0.113.1", `1.1.1.${i}`).response).body?.cancel();
  }
  await assert.rejects(call("203.0.113.1", "1.1.1.9").response, RateLimitedError);
  // Through a trusted proxy each forwarded client has its own bucket.
  for (let i = 0; i < 2; i++) await (await call("10.0.0.1", "1.1.1.1").response).body?.cancel();
  await assert.rejects(call("10.0.0.1", "1.1.1.1").response, RateLimitedError);
  const other = await call("10.0.0.1", "1.1.1.2").response;
  assert.equal(other.status, 200);
  await other.body?.cancel();
});
