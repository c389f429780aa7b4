/**
 * Model routing end to end: real listeners, mock upstreams. Groups chosen by the body's model,
 * `modelMap` as the upstreams see it, fallbacks across groups (and never after the first byte),
 * with their metric and access log.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

/** A port nothing listens on: a mock started and closed again. */
async function deadUrl(): Promise<string> {
  const dead = await startMockUpstream();
  await dead.close();
  return dead.url;
}

const chat = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...extra });

const sentModels = (mock: MockUpstream) => mock.requests.map((r) => JSON.parse(r.body).model);

Deno.test("e2e model routing: exact names, globs by length, a path rule first, defaultGroup last", async () => {
  const mocks: Record<string, MockUpstream> = {};
  for (const name of ["exact", "glob", "longer", "embed", "default"]) {
    mocks[name] = await startMockUpstream({ name });
  }
  const upstreams = Object.entries(mocks).map(([name, mock]) =>
    `  - {name: ${name}, url: "${mock.url}"}`
  ).join("\n");
  const proxy = await startTestProxy(`httpServer:
  forwards:
    - name: main
      port: 0
      defaultGroup: default
      routing: [{path: "/v1/embeddings", targetGroup: embed}]
upstreams:
${upstreams}
upstreamGroups:
  - {name: glob, upstreams: [{name: glob}], models: ["gpt-*", "claude-*"]}
  - {name: longer, upstreams: [{name: longer}], models: ["gpt-4o-*"]}
  - {name: exact, upstreams: [{name: exact}], models: ["gpt-4o-mini", "o3"]}
  - {name: embed, upstreams: [{name: embed}]}
  - {name: default, upstreams: [{name: default}]}
`);
  try {
    const via = async (model: string, path = "/v1/chat/completions") => {
      const response = await fetch(`${proxy.url()}${path}`, { method: "POST", body: chat(model) });
      await response.body?.cancel();
      assert.equal(response.status, 200);
      return response.headers.get("x-mock-upstream");
    };
    assert.equal(await via("gpt-4o-mini"), "exact");
    assert.equal(await via("gpt-4o-2024-08-06"), "longer");
    assert.equal(await via("gpt-4.1"), "glob");
    assert.equal(await via("o3"), "exact");
    assert.equal(await via("o3-mini"), "default");
    assert.equal(await via("gpt-4o-mini", "/v1/embeddings"), "embed");
    // The body went through byte for byte (no model map).
    assert.equal(mocks.exact!.requests[0]!.body, chat("gpt-4o-mini"));
  } finally {
    await proxy.stop();
    for (const mock of Object.values(mocks)) await mock.close();
  }
});

Deno.test("e2e modelMap: each upstream sees its own name for the model, also on a retry", async () => {
  const vllm = await startMockUpstream({ name: "vllm" });
  const ollama = await startMockUpstream({ name: "ollama" });
  const proxy = await startTestProxy(`httpServer:
  forwards: [{name: main, port: 0, defaultGroup: chat}]
upstreams:
  - name: vllm
    url: "${vllm.url}"
    modelMap: {"gpt-4o": "Qwen/Qwen2.5-72B-Instruct"}
  - name: ollama
    url: "${ollama.url}"
    modelMap: {"gpt-4o*": "llama3.1:70b"}
upstreamGroups:
  - name: chat
    upstreams: [{name: vllm}, {name: ollama}]
    balance: {strategy: failover}
    models: ["gpt-4o"]
    httpClient: {retry: {attempts: 1, initial: 0}}
`);
  try {
    vllm.script({ status: 503 });
    const body = '{"messages":[{"role":"user","content":"hi"}] , "model":"gpt-4o","stream":false}';
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, { method: "POST", body });
    assert.equal(response.status, 200);
    // The mock names the model it was asked for: the client sees the upstream's answer as is.
    assert.equal((await response.json()).model, "llama3.1:70b@ollama");
    assert.deepEqual(vllm.requests.map((r) => r.body), [
      body.replace('"gpt-4o"', '"Qwen/Qwen2.5-72B-Instruct"'),
    ]);
    assert.deepEqual(ollama.requests.map((r) => r.body), [
      body.replace('"gpt-4o"', '"llama3.1:70b"'),
    ]);
    const next = await fetch(`${proxy.url()}/v1/chat/completions`, { method: "POST", body });
    await next.body?.cancel();
    assert.deepEqual(sentModels(vllm), ["Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct"]);
  } finally {
    await proxy.stop();
    await vllm.close();
    await ollama.close();
  }
});

Deno.test("e2e fallbacks: the first group down, the second's context too small, the third answers with its model", async () => {
  const small = await startMockUpstream({ name: "small", contextChars: 200 });
  const large = await startMockUpstream({ name: "large" });
  const proxy = await startTestProxy(
    `httpServer:
  forwards: [{name: main, port: 0, defaultGroup: primary}]
  admin: {port: 0}
upstreams:
  - {name: down, url: "${await deadUrl()}"}
  - {name: small, url: "${small.url}"}
  - {name: large, url: "${large.url}"}
upstreamGroups:
  - name: primary
    upstreams: [{name: down}]
    models: ["gpt-4o"]
    httpClient: {retry: {attempts: 1, initial: 0}}
    fallbacks:
      - {group: small}
      - {group: large, model: "llama-3.1-70b"}
  - {name: small, upstreams: [{name: small}]}
  - {name: large, upstreams: [{name: large}]}
`,
    { captureLogs: true, logLevel: "info", json: true },
  );
  try {
    const long = chat("gpt-4o", { messages: [{ role: "user", content: "x".repeat(500) }] });
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: long,
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).model, "llama-3.1-70b@large");
    assert.deepEqual(sentModels(small), ["gpt-4o"], "no model given: the client's");
    assert.deepEqual(large.requests.map((r) => r.body), [
      long.replace('"gpt-4o"', '"llama-3.1-70b"'),
    ]);

    // A short prompt ends at the second group.
    const short = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: chat("gpt-4o"),
    });
    assert.equal((await short.json()).model, "gpt-4o@small");

    const metrics = parsePrometheusText(await (await fetch(`${proxy.adminUrl()}/metrics`)).text());
    const fallbacks = (from: string, to: string) =>
      sampleValue(metrics, "llmproxy_fallbacks_total", { from, to });
    assert.equal(fallbacks("primary", "small"), 2);
    assert.equal(fallbacks("small", "large"), 1);
    await proxy.stop();
    const access = proxy.logs.map((l) => JSON.parse(l)).filter((l) => l.log === "access");
    assert.deepEqual(
      access.map((l) => [l.group, l.model, l.upstream, l.fallbacks, l.attempts, l.status]),
      [
        ["large", "llama-3.1-70b", "large", 2, 4, 200],
        ["small", "gpt-4o", "small", 1, 3, 200],
      ],
    );
  } finally {
    await proxy.stop();
    await small.close();
    await large.close();
  }
});

Deno.test("e2e fallbacks: never after the first byte went to the client", async () => {
  const first = await startMockUpstream({ name: "first" });
  const second = await startMockUpstream({ name: "second" });
  const proxy = await startTestProxy(`httpServer:
  forwards: [{name: main, port: 0, defaultGroup: primary}]
upstreams:
  - {name: first, url: "${first.url}"}
  - {name: second, url: "${second.url}"}
upstreamGroups:
  - name: primary
    upstreams: [{name: first}]
    fallbacks: [{group: backup}]
  - {name: backup, upstreams: [{name: second}]}
`);
  try {
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: chat("m", { stream: true }),
      headers: { "x-mock-cut-after": "2", "x-mock-chunks": "5" },
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /event: error/, "the client is told the stream broke");
    assert.equal(second.requests.length, 0, "nothing was sent to the fallback");
  } finally {
    await proxy.stop();
    await first.close();
    await second.close();
  }
});
