import assert from "node:assert/strict";
import { compose } from "../../src/pipeline/compose.ts";
import { validateRequestStage } from "../../src/pipeline/validate_request.ts";
import { testContext } from "../_helpers/request_context.ts";

/** Runs the stage; the next stage answers 200 with the path and query it saw. */
async function run(method: string, url: string): Promise<Response> {
  const handler = compose([
    validateRequestStage(),
    (ctx) => Promise.resolve(Response.json({ path: ctx.path, query: ctx.query })),
  ]);
  return await handler(testContext(new Request(url, { method })));
}

Deno.test("validateRequestStage() refuses TRACE, TRACK and CONNECT in any case with 405", async () => {
  for (const method of ["TRACE", "trace", "TRACK", "Track", "CONNECT", "connect"]) {
    // The Request constructor itself refuses forbidden methods: the server hands them over.
    const request = Object.defineProperty(new Request("http://proxy.test/x"), "method", {
      value: method,
    });
    const response = await compose([
      validateRequestStage(),
      () => Promise.resolve(new Response("next")),
    ])(testContext(request));
    assert.equal(response.status, 405, method);
    assert.match(response.headers.get("allow") ?? "", /GET.*POST/);
    const body = await response.json();
    assert.equal(body.error.code, "method_not_allowed");
    assert.equal(body.error.type, "invalid_request_error");
  }
});

Deno.test("validateRequestStage() passes other methods and canonicalises path and query", async () => {
  for (const method of ["GET", "POST", "PATCH", "DELETE", "OPTIONS", "PURGE", "TRACES"]) {
    const response = await run(method, "http://proxy.test/v1/models");
    assert.equal(response.status, 200, method);
    await response.body?.cancel();
  }
  // `new Request` parses the URL (so dot segments are gone already); the server does not.
  const ctx = testContext(new Request("http://proxy.test/"));
  ctx.path = "/v1/./a/%2e%2e/é";
  ctx.query = "q=€";
  const response = await compose([
    validateRequestStage(),
    (c) => Promise.resolve(Response.json({ path: c.path, query: c.query })),
  ])(ctx);
  assert.deepEqual(await response.json(), { path: "/v1/%C3%A9", query: "q=%E2%82%AC" });
});

Deno.test("validateRequestStage() answers a path that leaves the root with 400 invalid_path", async () => {
  for (const path of ["/%2e%2e/secret", "/v1/../../admin", "/a\\..\\..\\b", "/a/..;/b", "/%00"]) {
    const ctx = testContext(new Request("http://proxy.test/"));
    ctx.path = path;
    let reached = false;
    const response = await compose([validateRequestStage(), () => {
      reached = true;
      return Promise.resolve(new Response("next"));
    }])(ctx);
    assert.equal(response.status, 400, path);
    assert.equal((await response.json()).error.code, "invalid_path");
    assert.equal(reached, false);
  }
});
