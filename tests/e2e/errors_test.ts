import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { assertErrorBody, freePort } from "../_helpers/raw_http.ts";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

Deno.test("e2e errors: an unreachable upstream → 502 OpenAI-style JSON", async () => {
  const port = freePort();
  const proxy = await startTestProxy(
    simpleConfig([`http://127.0.0.1:${port}/v1/chat/completions`], {
      group: "httpClient: {retry: {attempts: 0}}",
    }),
  );
  try {
    const start = performance.now();
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: "{}",
    });
    const error = await assertErrorBody(response, 502, "upstream_unreachable");
    assert.equal(error.type, "upstream_error");
    assert.ok(UUID_RE.test(response.headers.get("x-request-id") ?? ""));
    assert.ok(performance.now() - start < 2000);
  } finally {
    await proxy.stop();
  }
});

Deno.test("e2e errors: upstream error responses pass through as they are", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/v1/chat/completions`], {
    group: "httpClient: {retry: {attempts: 0}}",
  }));
  try {
    for (const status of [400, 404, 500, 503]) {
      const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
        method: "POST",
        headers: { "x-mock-status": String(status) },
        body: "{}",
      });
      assert.equal(response.status, status);
      const body = await response.json();
      assert.equal(body.error.message, `Mock upstream error ${status}`);
      assert.equal(response.headers.get("x-mock-upstream"), "mock");
      assert.ok(response.headers.get("x-request-id"));
    }
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e request id: every response carries X-Request-Id", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/echo`]));
  try {
    const send = async (id?: string, method = "GET") => {
      const response = await fetch(`${proxy.url()}/v1/models`, {
        method,
        headers: id === undefined ? {} : { "x-request-id": id },
      });
      await response.body?.cancel();
      return response.headers.get("x-request-id");
    };
    // Generated, unique per request.
    const a = await send();
    const b = await send();
    assert.match(a ?? "", UUID_RE);
    assert.match(b ?? "", UUID_RE);
    assert.notEqual(a, b);
    // A sane client id is echoed.
    assert.equal(await send("req-123_abc.DEF:9"), "req-123_abc.DEF:9");
    // Insane ones are replaced.
    for (const insane of ["has spaces in it", "x".repeat(200), "semi;colon", "<script>"]) {
      const got = await send(insane);
      assert.match(got ?? "", UUID_RE, `"${insane}" was echoed as ${got}`);
    }
    // Also on a response without a body.
    assert.match(await send(undefined, "HEAD") ?? "", UUID_RE);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e request id: proxy-side errors carry X-Request-Id too", async () => {
  const port = freePort();
  const proxy = await startTestProxy(simpleConfig([`http://127.0.0.1:${port}`], {
    group: "httpClient: {retry: {attempts: 0}}",
    server: `maxBodySize: "1KiB"`,
  }));
  try {
    const tooLarge = await fetch(`${proxy.url()}/v1/x`, {
      method: "POST",
      headers: { "x-request-id": "client-id-413" },
      body: "x".repeat(2048),
    });
    await tooLarge.body?.cancel();
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.headers.get("x-request-id"), "client-id-413");

    const unreachable = await fetch(`${proxy.url()}/v1/x`, {
      headers: { "x-request-id": "client-id-502" },
    });
    await unreachable.body?.cancel();
    assert.equal(unreachable.status, 502);
    assert.equal(unreachable.headers.get("x-request-id"), "client-id-502");
  } finally {
    await proxy.stop();
  }
});
