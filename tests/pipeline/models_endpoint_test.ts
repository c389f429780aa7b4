import assert from "node:assert/strict";
import { compose } from "../../src/pipeline/compose.ts";
import { ModelCatalog, modelsEndpointStage } from "../../src/pipeline/models_endpoint.ts";
import { ClientKey } from "../../src/keys/client_key.ts";
import { BudgetLedger } from "../../src/keys/budget.ts";
import type { ClientKeyConfig } from "../../src/config/schema.ts";
import { testContext } from "../_helpers/request_context.ts";

const GROUPS = [
  { name: "openai", models: ["gpt-4o", "gpt-4o-mini", "o3*"] },
  { name: "plain" },
  { name: "local", models: ["llama-3.1-70b", "gpt-4o", "Qwen/Qwen2.5-72B", "modèle-ü"] },
];

function key(extra: Partial<ClientKeyConfig> = {}): ClientKey {
  return new ClientKey({ name: "k", key: "sk-k-0123456789", ...extra }, new BudgetLedger());
}

/** Runs the stage on `url`; the next stage answers 299 "proxied". */
async function run(
  url: string,
  options: { method?: string; key?: ClientKey; catalog?: ModelCatalog } = {},
): Promise<{ status: number; headers: Headers; text: string; bodyBytes?: number }> {
  const catalog = options.catalog ?? ModelCatalog.fromGroups(GROUPS)!;
  const ctx = testContext(new Request(url, { method: options.method ?? "GET" }));
  ctx.requestId = "req-1";
  ctx.responseHeaders.push(["x-request-id", "req-1"]);
  if (options.key) ctx.clientKey = options.key;
  const response = await compose([
    modelsEndpointStage(catalog),
    () => Promise.resolve(new Response("proxied", { status: 299 })),
  ])(ctx);
  return {
    status: response.status,
    headers: response.headers,
    text: await response.text(),
    ...(ctx.trace.bodyBytes !== undefined ? { bodyBytes: ctx.trace.bodyBytes } : {}),
  };
}

const model = (id: string) => ({ id, object: "model", created: 0, owned_by: "llmproxy" });

Deno.test("ModelCatalog.fromGroups() is undefined when no group declares models", () => {
  assert.equal(ModelCatalog.fromGroups([{ name: "a" }, { name: "b" }]), undefined);
  assert.ok(ModelCatalog.fromGroups([{ name: "a", models: ["x*"] }]));
});

Deno.test("modelsEndpointStage() lists the exact names, deduplicated, in config order", async () => {
  const reply = await run("http://proxy.test/v1/models");
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("content-type"), "application/json");
  assert.equal(reply.headers.get("x-request-id"), "req-1");
  assert.equal(
    reply.text,
    '{"object":"list","data":[' +
      '{"id":"gpt-4o","object":"model","created":0,"owned_by":"llmproxy"},' +
      '{"id":"gpt-4o-mini","object":"model","created":0,"owned_by":"llmproxy"},' +
      '{"id":"llama-3.1-70b","object":"model","created":0,"owned_by":"llmproxy"},' +
      '{"id":"Qwen/Qwen2.5-72B","object":"model","created":0,"owned_by":"llmproxy"},' +
      '{"id":"modèle-ü","object":"model","created":0,"owned_by":"llmproxy"}]}',
  );
  assert.equal(reply.bodyBytes, new TextEncoder().encode(reply.text).byteLength);
});

Deno.test("modelsEndpointStage() lists only what the client key may use", async () => {
  const ids = async (k: ClientKey) =>
    (JSON.parse((await run("http://proxy.test/v1/models", { key: k })).text).data as {
      id: string;
    }[]).map((m) => m.id);
  assert.deepEqual(await ids(key()), [
    "gpt-4o",
    "gpt-4o-mini",
    "llama-3.1-70b",
    "Qwen/Qwen2.5-72B",
    "modèle-ü",
  ]);
  assert.deepEqual(await ids(key({ models: ["gpt-*"] })), ["gpt-4o", "gpt-4o-mini"]);
  // gpt-4o goes to "openai" (its first group): a key limited to "local" could not use it.
  assert.deepEqual(await ids(key({ groups: ["local"] })), [
    "llama-3.1-70b",
    "Qwen/Qwen2.5-72B",
    "modèle-ü",
  ]);
  assert.deepEqual(await ids(key({ groups: ["plain"] })), []);
});

Deno.test("modelsEndpointStage() renders a key's view once", () => {
  const catalog = ModelCatalog.fromGroups(GROUPS)!;
  const k = key({ models: ["llama-*"] });
  assert.equal(catalog.view(k), catalog.view(k));
  assert.equal(catalog.view(undefined), catalog.view(undefined));
  assert.notEqual(catalog.view(k), catalog.view(undefined));
});

Deno.test("modelsEndpointStage() answers /v1/models/{id} with the model, ids with / and non-ASCII too", async () => {
  for (
    const [url, id] of [
      ["http://proxy.test/v1/models/gpt-4o", "gpt-4o"],
      ["http://proxy.test/v1/models/Qwen/Qwen2.5-72B", "Qwen/Qwen2.5-72B"],
      // What `new Request` makes of the OpenAI SDK's encodeURIComponent("modèle-ü").
      ["http://proxy.test/v1/models/mod%C3%A8le-%C3%BC", "modèle-ü"],
    ]
  ) {
    const reply = await run(url!);
    assert.equal(reply.status, 200, url);
    assert.deepEqual(JSON.parse(reply.text), model(id!));
  }
});

Deno.test("modelsEndpointStage() answers 404 model_not_found for a model not listed for the key", async () => {
  for (
    const [url, k] of [
      ["http://proxy.test/v1/models/gpt-5", undefined],
      ["http://proxy.test/v1/models/o3-mini", undefined], // a glob names no model
      ["http://proxy.test/v1/models/gpt-4o", key({ groups: ["local"] })],
      ["http://proxy.test/v1/models/", undefined],
      ["http://proxy.test/v1/models/%FF", undefined],
    ] as const
  ) {
    const reply = await run(url, k ? { key: k } : {});
    assert.equal(reply.status, 404, url);
    assert.equal(reply.headers.get("x-request-id"), "req-1");
    const error = JSON.parse(reply.text).error;
    assert.equal(error.code, "model_not_found", url);
    assert.equal(error.type, "invalid_request_error");
    assert.match(error.message, /^the model ".*" does not exist or you do not have access to it$/);
  }
});

Deno.test("modelsEndpointStage() answers HEAD with the headers only", async () => {
  const get = await run("http://proxy.test/v1/models");
  const head = await run("http://proxy.test/v1/models", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.text, "");
  assert.equal(
    head.headers.get("content-length"),
    String(new TextEncoder().encode(get.text).length),
  );
  assert.equal(head.bodyBytes, 0);
});

Deno.test("modelsEndpointStage() passes other methods and paths on", async () => {
  for (
    const [method, url] of [
      ["POST", "http://proxy.test/v1/models"],
      ["DELETE", "http://proxy.test/v1/models/gpt-4o"],
      ["GET", "http://proxy.test/v1/modelsX"],
      ["GET", "http://proxy.test/openai/v1/models"],
      ["GET", "http://proxy.test/v1/chat/completions"],
      ["GET", "http://proxy.test/models"],
    ]
  ) {
    const reply = await run(url!, { method: method! });
    assert.equal(reply.status, 299, `${method} ${url}`);
    assert.equal(reply.text, "proxied");
  }
});
