/**
 * `GET /v1/models` answered from the config: per client key, through the OpenAI SDK, updated by
 * a reload, and without contacting any upstream. Without groups' `models` it is proxied.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseConfig } from "../../src/config/load.ts";
import { startApp } from "../../src/app.ts";
import { silentLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";

const KEY_ALL = "sk-models-all-1a2b3c4d5e";
const KEY_LOCAL = "sk-models-local-6f7a8b9c0d";

function config(mock: MockUpstream, openaiModels: string): string {
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: openai}
upstreams:
  - {name: u, url: "${mock.url}"}
upstreamGroups:
  - {name: openai, upstreams: [{name: u}], models: ${openaiModels}}
  - {name: local, upstreams: [{name: u}], models: ["llama-3.1-70b", "Qwen/Qwen2.5-72B", "gpt-4o"]}
clientKeys:
  - {name: all, key: "${KEY_ALL}"}
  - {name: local_only, key: "${KEY_LOCAL}", groups: [local]}
`;
}

async function withApp(
  fn: (
    base: string,
    mock: MockUpstream,
    reload: (openaiModels: string) => Promise<void>,
  ) => Promise<void>,
) {
  const mock = await startMockUpstream({ name: "models-mock" });
  let text = config(mock, `["gpt-4o", "gpt-4o-mini", "o3*"]`);
  const app = await startApp(parseConfig(text, "test.yaml", () => undefined), {
    log: silentLogger,
    handleSignals: false,
    env: () => undefined,
    reload: () => Promise.resolve(parseConfig(text, "test.yaml", () => undefined)),
  });
  const base = `http://127.0.0.1:${app.forwards.get("main")!.port}`;
  try {
    await fn(base, mock, async (openaiModels) => {
      text = config(mock, openaiModels);
      assert.equal((await app.reload()).ok, true);
    });
  } finally {
    await app.stop();
    await mock.close();
  }
}

const openai = (base: string, apiKey: string) =>
  new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });

async function ids(client: OpenAI): Promise<string[]> {
  const list: string[] = [];
  for await (const model of client.models.list()) list.push(model.id);
  return list;
}

Deno.test("e2e models: each client key sees its own list through the OpenAI SDK; no upstream contacted", async () => {
  await withApp(async (base, mock) => {
    assert.deepEqual(await ids(openai(base, KEY_ALL)), [
      "gpt-4o",
      "gpt-4o-mini",
      "llama-3.1-70b",
      "Qwen/Qwen2.5-72B",
    ]);
    // gpt-4o is routed to "openai" (its first group), which this key may not reach.
    assert.deepEqual(await ids(openai(base, KEY_LOCAL)), ["llama-3.1-70b", "Qwen/Qwen2.5-72B"]);

    const qwen = await openai(base, KEY_LOCAL).models.retrieve("Qwen/Qwen2.5-72B");
    assert.deepEqual(
      { ...qwen },
      { id: "Qwen/Qwen2.5-72B", object: "model", created: 0, owned_by: "llmproxy" },
    );
    const hidden = await openai(base, KEY_LOCAL).models.retrieve("gpt-4o").then(
      () => assert.fail("expected 404"),
      (error) => error,
    );
    assert.ok(hidden instanceof OpenAI.NotFoundError, String(hidden));
    assert.equal(hidden.code, "model_not_found");
    assert.equal(hidden.type, "invalid_request_error");
    assert.match(
      hidden.message,
      /the model "gpt-4o" does not exist or you do not have access to it/,
    );
    assert.ok(hidden.requestID);

    // A keyed forward still wants a key.
    const anonymous = await fetch(`${base}/v1/models`);
    assert.equal(anonymous.status, 401);
    assert.equal((await anonymous.json()).error.code, "missing_api_key");

    const head = await fetch(`${base}/v1/models`, {
      method: "HEAD",
      headers: { authorization: `Bearer ${KEY_ALL}` },
    });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "application/json");
    assert.ok(head.headers.get("x-request-id"));
    assert.equal(await head.text(), "");

    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e models: a reload changes the list", async () => {
  await withApp(async (base, mock, reload) => {
    await reload(`["gpt-4.1", "gpt-4o"]`);
    assert.deepEqual(await ids(openai(base, KEY_ALL)), [
      "gpt-4.1",
      "gpt-4o",
      "llama-3.1-70b",
      "Qwen/Qwen2.5-72B",
    ]);
    // Now gpt-4o-mini is nobody's.
    const gone = await fetch(`${base}/v1/models/gpt-4o-mini`, {
      headers: { authorization: `Bearer ${KEY_ALL}` },
    });
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).error.code, "model_not_found");
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e models: without groups' models, GET /v1/models goes upstream as before", async () => {
  const mock = await startMockUpstream({ name: "plain-mock" });
  const proxy = await startTestProxy(simpleConfig([mock.url]));
  try {
    const list = await new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: "x", maxRetries: 0 })
      .models.list();
    assert.deepEqual(list.data.map((m) => m.owned_by), ["plain-mock", "plain-mock"]);
    assert.equal(mock.requests.length, 1);
    assert.equal(mock.requests[0]!.path, "/v1/models");
  } finally {
    await proxy.stop();
    await mock.close();
  }
});
