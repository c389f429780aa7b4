import assert from "node:assert/strict";
import { compose, type Stage, syncStage } from "../../src/pipeline/compose.ts";
import { NotFoundError, RateLimitedError } from "../../src/pipeline/errors.ts";
import { testContext } from "../_helpers/request_context.ts";

const ok: Stage = () => Promise.resolve(new Response("ok"));

Deno.test("compose() runs stages in order, each wrapping the next", async () => {
  const calls: string[] = [];
  const stage = (name: string): Stage => async (_ctx, next) => {
    calls.push(`${name} in`);
    const response = await next();
    calls.push(`${name} out`);
    return response;
  };
  const handler = compose([stage("a"), stage("b"), ok]);
  const response = await handler(testContext());
  assert.equal(await response.text(), "ok");
  assert.deepEqual(calls, ["a in", "b in", "b out", "a out"]);
});

Deno.test("compose() lets a stage short-circuit with its own response", async () => {
  let reached = false;
  const handler = compose([
    () => Promise.resolve(new Response("early", { status: 202 })),
    () => {
      reached = true;
      return Promise.resolve(new Response("late"));
    },
  ]);
  const response = await handler(testContext());
  assert.equal(response.status, 202);
  assert.equal(await response.text(), "early");
  assert.equal(reached, false);
});

Deno.test("compose() shares the context between stages", async () => {
  const handler = compose([
    (ctx, next) => {
      ctx.clientIp = "198.51.100.1";
      ctx.trace.group = "g";
      return next();
    },
    (ctx) => Promise.resolve(new Response(`${ctx.clientIp} ${ctx.trace.group} ${ctx.path}`)),
  ]);
  const response = await handler(testContext(new Request("http://proxy.test/v1/chat?x=1")));
  assert.equal(await response.text(), "198.51.100.1 g /v1/chat");
});

Deno.test("compose() renders a thrown ProxyError, with the request id", async () => {
  const handler = compose([
    (ctx, next) => {
      ctx.requestId = "req-1";
      return next();
    },
    () => {
      throw new RateLimitedError("slow down", {
        code: "rate_limit_exceeded",
        headers: { "retry-after": "3" },
      });
    },
  ]);
  const response = await handler(testContext());
  assert.equal(response.status, 429);
  assert.equal(response.headers.get("retry-after"), "3");
  assert.equal(response.headers.get("x-request-id"), "req-1");
  assert.deepEqual(await response.json(), {
    error: { message: "slow down", type: "rate_limit_error", code: "rate_limit_exceeded" },
  });
});

Deno.test("compose() answers a Messages API request's error in Anthropic's shape, with request-id", async () => {
  const handler = compose([
    (ctx, next) => {
      ctx.requestId = "req-2";
      ctx.responseHeaders.push(["x-request-id", "req-2"]);
      return next();
    },
    () => Promise.reject(new NotFoundError("no route", { code: "no_route" })),
  ]);
  const response = await handler(
    testContext(new Request("http://proxy.test/anthropic/v1/messages?beta=true")),
  );
  assert.equal(response.status, 404);
  assert.equal(response.headers.get("request-id"), "req-2");
  assert.equal(response.headers.get("x-request-id"), "req-2");
  assert.deepEqual(await response.json(), {
    type: "error",
    error: { type: "not_found_error", message: "no route", details: { error_code: "no_route" } },
    request_id: "req-2",
  });
});

Deno.test("compose() renders a rejected promise from a deeper stage", async () => {
  const handler = compose([
    (_ctx, next) => next(),
    () => Promise.reject(new NotFoundError("no route", { code: "no_route" })),
  ]);
  const response = await handler(testContext());
  assert.equal(response.status, 404);
  assert.equal((await response.json()).error.code, "no_route");
});

Deno.test("compose() turns an unexpected error into a generic 500", async () => {
  const handler = compose([() => {
    throw new TypeError("Cannot read properties of undefined (secret internals)");
  }]);
  const response = await handler(testContext());
  assert.equal(response.status, 500);
  const text = await response.text();
  assert.doesNotMatch(text, /secret|TypeError/);
  assert.equal(JSON.parse(text).error.code, "internal_error");
});

Deno.test("compose() answers 500 when the last stage calls next()", async () => {
  const response = await compose([(_ctx, next) => next()])(testContext());
  assert.equal(response.status, 500);
  assert.equal((await response.json()).error.message, "internal proxy error");
  const empty = await compose([])(testContext());
  assert.equal(empty.status, 500);
  await empty.body?.cancel();
});

Deno.test("compose() lets an outer stage catch and replace an inner error", async () => {
  const handler = compose([
    async (_ctx, next) => {
      try {
        return await next();
      } catch {
        return new Response("recovered", { status: 299 });
      }
    },
    () => {
      throw new Error("inner");
    },
  ]);
  const response = await handler(testContext());
  assert.equal(response.status, 299);
  assert.equal(await response.text(), "recovered");
});

Deno.test("syncStage(): a synchronous throw becomes a rejected promise; answers pass through", async () => {
  const refusing = syncStage(() => {
    throw new RateLimitedError("no", { code: "rate_limited" });
  });
  const ctx = testContext();
  let result: Promise<Response> | undefined;
  assert.doesNotThrow(() => result = refusing(ctx, () => Promise.resolve(new Response("x"))));
  await assert.rejects(result!, RateLimitedError);
  const passing = syncStage((_ctx, next) => next());
  const response = await passing(ctx, () => Promise.resolve(new Response("ok")));
  assert.equal(await response.text(), "ok");
});
