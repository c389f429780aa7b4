import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";

Deno.test("proxy forwards the seed's example to the upstream URL's path", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/v1/chat/completions`]));
  try {
    const response = await fetch(`${proxy.url()}/api/v3/chat/completions?x=1`, {
      method: "POST",
      body: JSON.stringify({ model: "m" }),
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.object, "chat.completion");
    assert.ok(response.headers.get("x-request-id"));
    assert.equal(mock.requests[0]!.path, "/v1/chat/completions");
    assert.equal(mock.requests[0]!.search, "?x=1");
  } finally {
    await proxy.stop();
    await mock.close();
  }
});
