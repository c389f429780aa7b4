import assert from "node:assert/strict";
import { compose } from "../../src/pipeline/compose.ts";
import { BadGatewayError } from "../../src/pipeline/errors.ts";
import { requestIdStage } from "../../src/pipeline/request_id.ts";
import { testContext } from "../_helpers/request_context.ts";

/** The X-Request-Id the stage asked the proxy to put on the response. */
function sentId(ctx: { responseHeaders: [string, string][] }): string | null {
  return new Headers(ctx.responseHeaders).get("x-request-id");
}

function request(id?: string): Request {
  return new Request("http://proxy.test/v1/models", {
    headers: id === undefined ? {} : { "x-request-id": id },
  });
}

Deno.test("requestIdStage() accepts a sane X-Request-Id from the client", async () => {
  const stage = requestIdStage(() => "generated");
  for (
    const id of ["abc-123", "req_1.2:3", "A".repeat(128), "550e8400-e29b-41d4-a716-446655440000"]
  ) {
    const ctx = testContext(request(id));
    const response = await stage(ctx, () => Promise.resolve(new Response("ok")));
    assert.equal(ctx.requestId, id);
    assert.equal(sentId(ctx), id);
    await response.body?.cancel();
  }
});

Deno.test("requestIdStage() replaces a missing or unsafe X-Request-Id", async () => {
  let n = 0;
  const stage = requestIdStage(() => `gen-${++n}`);
  for (const id of [undefined, "", "has space", "A".repeat(129), "ünïcode", "a/b", "<script>"]) {
    const ctx = testContext(request(id));
    const response = await stage(ctx, () => Promise.resolve(new Response("ok")));
    assert.equal(ctx.requestId, `gen-${n}`, String(id));
    assert.equal(sentId(ctx), `gen-${n}`);
    await response.body?.cancel();
  }
});

Deno.test("requestIdStage() generates UUIDs by default", async () => {
  const ctx = testContext(request());
  const response = await requestIdStage()(ctx, () => Promise.resolve(new Response("ok")));
  assert.match(
    ctx.requestId,
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  assert.equal(sentId(ctx), ctx.requestId);
  await response.body?.cancel();
});

Deno.test("requestIdStage() sets the id before later stages run", async () => {
  const ctx = testContext(request("early"));
  let seen = "";
  const response = await requestIdStage()(ctx, () => {
    seen = ctx.requestId;
    return Promise.resolve(new Response("ok"));
  });
  assert.equal(seen, "early");
  await response.body?.cancel();
});

Deno.test("requestIdStage() id reaches error responses rendered by compose()", async () => {
  const handler = compose([
    requestIdStage(() => "gen"),
    () => Promise.reject(new BadGatewayError("upstream down", { code: "upstream_unreachable" })),
  ]);
  const response = await handler(testContext(request("client-id")));
  assert.equal(response.status, 502);
  assert.equal(response.headers.get("x-request-id"), "client-id");
  await response.body?.cancel();
  const generated = await handler(testContext(request("bad id")));
  assert.equal(generated.headers.get("x-request-id"), "gen");
  await generated.body?.cancel();
});
