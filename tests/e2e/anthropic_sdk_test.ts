import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";

const KEY = "sk-ant-client-3c9f1e7a5b";

Deno.test("e2e anthropic sdk: the client key travels in x-api-key, is checked, and never reaches the upstream", async () => {
  const mock = await startMockUpstream({ name: "anthropic-mock" });
  const yaml = simpleConfig([mock.url], {
    upstream:
      `auth: {type: none}\nheaders: [{op: insert, key: x-api-key, value: "sk-ant-upstream-0123456789"}]`,
  }) + `clientKeys:\n  - name: claude_team\n    key: "${KEY}"\n`;
  const proxy = await startTestProxy(yaml, { captureLogs: true });
  try {
    // The mock has no Messages API: its /echo route answers with what it received.
    const client = (apiKey: string) =>
      new Anthropic({ baseURL: `${proxy.url()}/echo`, apiKey, maxRetries: 0 });
    const echoed = await client(KEY).messages.create({
      model: "claude-test",
      max_tokens: 16,
      messages: [{ role: "user", content: "hello" }],
    }) as unknown as { path: string; headers: Record<string, string>; body: string };
    assert.equal(echoed.path, "/echo/v1/messages");
    assert.equal(
      echoed.headers["x-api-key"],
      "sk-ant-upstream-0123456789",
      "the upstream's own key",
    );
    assert.equal(echoed.headers["authorization"], undefined);
    assert.ok(!JSON.stringify(echoed).includes(KEY));

    const refused = await client("sk-ant-wrong").messages.create({
      model: "claude-test",
      max_tokens: 16,
      messages: [{ role: "user", content: "hello" }],
    }).then(() => undefined, (error) => error);
    assert.ok(refused instanceof Anthropic.AuthenticationError, String(refused));
    assert.equal(refused.status, 401);
    assert.equal(mock.requests.length, 1);
    await proxy.stop();
    assert.ok(!proxy.logs.join("\n").includes(KEY));
    assert.match(proxy.logs.join("\n"), /key=claude_team/);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});
