/**
 * Model routing in-process (scripted transport, fake clock): groups chosen by the body's model,
 * `modelMap` per upstream and per retry, and fallbacks across groups.
 */
import assert from "node:assert/strict";
import { loopRuntime } from "../_helpers/loop_runtime.ts";

const FAST_RETRY = "httpClient: {retry: {attempts: 1, initial: 0}}";
const refused = { error: new TypeError("connection refused") };
const CONTEXT_ERROR = {
  status: 400,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({
    error: {
      message: "This model's maximum context length is 8192 tokens",
      type: "invalid_request_error",
      code: "context_length_exceeded",
    },
  }),
};

/** Upstreams `a`…`f`; groups per `groups` (YAML lines each; FAST_RETRY unless they say). */
function config(
  groups: Record<string, string>,
  extra: { forward?: string; upstreams?: string } = {},
) {
  const hosts = ["a", "b", "c", "d", "e", "f"];
  return `httpServer:
  forwards: [{name: main, port: 0, defaultGroup: fallback_default${extra.forward ?? ""}}]
upstreams:
${hosts.map((h) => `  - {name: ${h}, url: "http://${h}.test/v1/chat/completions"}\n`).join("")}${
    extra.upstreams ?? ""
  }upstreamGroups:
  - {name: fallback_default, upstreams: [{name: f}]}
${
    Object.entries(groups).map(([name, lines]) =>
      `  - name: ${name}\n${
        (lines.includes("httpClient") ? lines : `${lines}\n${FAST_RETRY}`).split("\n")
          .map((l) => `    ${l}`).join("\n")
      }\n`
    ).join("")
  }`;
}

const models = (loop: ReturnType<typeof loopRuntime>) =>
  loop.transport.bodies.map((b) => JSON.parse(b!).model);

Deno.test("model routing: exact name, then the longest glob, then declared order; else defaultGroup", async () => {
  const loop = loopRuntime(config({
    exact: 'upstreams: [{name: a}]\nmodels: ["gpt-4o", "o3"]',
    glob: 'upstreams: [{name: b}]\nmodels: ["gpt-*"]',
    longer: 'upstreams: [{name: c}]\nmodels: ["gpt-4o-*", "o3*"]',
  }));
  const routed: Record<string, string> = {};
  for (const model of ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "o3", "o3-pro", "llama"]) {
    const reply = await loop.request({ body: JSON.stringify({ model, messages: [] }) });
    routed[model] = reply.headers.get("x-upstream")!;
  }
  assert.deepEqual(routed, {
    "gpt-4o": "a",
    "gpt-4o-mini": "c",
    "gpt-3.5-turbo": "b",
    "o3": "a",
    "o3-pro": "c",
    "llama": "f",
  });
  // Not JSON, no model, a model that is not a string: defaultGroup.
  for (const body of ["model=gpt-4o", '{"messages":[]}', '{"model":["gpt-4o"]}']) {
    assert.equal((await loop.request({ body })).headers.get("x-upstream"), "f", body);
  }
});

Deno.test("model routing: a matching path rule wins over the model", async () => {
  const loop = loopRuntime(
    config({
      chat: 'upstreams: [{name: a}]\nmodels: ["gpt-4o"]',
      embed: "upstreams: [{name: b}]",
    }, { forward: ", routing: [{path: /v1/embeddings, targetGroup: embed}]" }),
  );
  const body = '{"model":"gpt-4o","input":"x"}';
  assert.equal(
    (await loop.request({ path: "/v1/embeddings", body })).headers.get("x-upstream"),
    "b",
  );
  assert.equal((await loop.request({ body })).headers.get("x-upstream"), "a");
});

Deno.test("modelMap: each upstream gets its own name for the model, on every retry; other bytes kept", async () => {
  const loop = loopRuntime(
    config({
      chat: [
        "upstreams: [{name: m1}, {name: m2}, {name: m3}]",
        'models: ["gpt-4o*"]',
        "httpClient: {retry: {attempts: 2, initial: 0}}",
      ].join("\n"),
    }, {
      upstreams: `  - name: m1
    url: "http://m1.test/v1/chat/completions"
    modelMap: {"gpt-4o": "Qwen/Qwen2.5-72B-Instruct"}
  - name: m2
    url: "http://m2.test/v1/chat/completions"
    modelMap: {"gpt-4o*": "llama-3.1-70b", "gpt-4o": "llama-3.1-8b"}
  - {name: m3, url: "http://m3.test/v1/chat/completions"}
`,
    }),
  );
  loop.transport.script("m1", { status: 503 });
  loop.transport.script("m2", { status: 502 });
  const body = '{ "messages": [{"role":"user","content":"hi"}],  "model": "gpt-4o", "n": 1 }';
  const reply = await loop.request({ body });
  assert.equal(reply.status, 200);
  assert.deepEqual(loop.transport.sent, ["m1", "m2", "m3"]);
  assert.deepEqual(loop.transport.bodies, [
    body.replace('"gpt-4o"', '"Qwen/Qwen2.5-72B-Instruct"'),
    body.replace('"gpt-4o"', '"llama-3.1-8b"'),
    body,
  ]);
  // The glob entry of m2's map (the exact one is for gpt-4o only); m1 and m3 keep the name.
  loop.transport.sent.length = loop.transport.bodies.length = 0;
  for (let i = 0; i < 3; i++) await loop.request({ body: '{"model":"gpt-4o-mini"}' });
  const sentTo = Object.fromEntries(
    loop.transport.sent.map((h, i) => [h, loop.transport.bodies[i]]),
  );
  assert.deepEqual(sentTo, {
    m1: '{"model":"gpt-4o-mini"}',
    m2: '{"model":"llama-3.1-70b"}',
    m3: '{"model":"gpt-4o-mini"}',
  });
});

Deno.test("fallbacks: a down group, then a context-length error, end at the third group with its model", async () => {
  const loop = loopRuntime(config({
    primary: [
      "upstreams: [{name: a}]",
      'models: ["gpt-4o"]',
      'fallbacks: [{group: small, model: "gpt-4o-mini"}, {group: local, model: "llama-3.1-70b"}]',
    ].join("\n"),
    small: "upstreams: [{name: b}]",
    local: "upstreams: [{name: c}]",
  }));
  loop.transport.always("a", refused);
  loop.transport.script("b", CONTEXT_ERROR);
  const reply = await loop.request({ body: '{"model":"gpt-4o","messages":[]}' });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("x-upstream"), "c");
  assert.deepEqual(loop.transport.sent, ["a", "a", "b", "c"]);
  assert.deepEqual(models(loop), ["gpt-4o", "gpt-4o", "gpt-4o-mini", "llama-3.1-70b"]);
});

Deno.test("fallbacks: the last group's answer is final; a 400 that is not about context is passed on", async () => {
  const loop = loopRuntime(config({
    primary: 'upstreams: [{name: a}]\nmodels: ["m"]\nfallbacks: [{group: other}]',
    other: "upstreams: [{name: b}]",
  }));
  loop.transport.script("a", { status: 400, body: '{"error":{"message":"bad temperature"}}' });
  const bad = await loop.request();
  assert.equal(bad.status, 400);
  assert.equal(bad.text, '{"error":{"message":"bad temperature"}}');
  assert.deepEqual(loop.transport.sent, ["a"]);

  // A context-length 400 on the last group passes through, body intact.
  loop.transport.always("a", { status: 503 });
  loop.transport.script("b", CONTEXT_ERROR);
  const last = await loop.request();
  assert.equal(last.status, 400);
  assert.equal(last.text, CONTEXT_ERROR.body);
  assert.deepEqual(loop.transport.sent, ["a", "a", "a", "b"]);
  assert.deepEqual(models(loop), ["m", "m", "m", "m"], "no model given: the client's");
});

Deno.test("fallbacks: skipped when the key may not use the group; none once the retry budget is spent", async () => {
  const yaml = config({
    primary: 'upstreams: [{name: a}]\nmodels: ["m"]\nfallbacks: [{group: other}, {group: third}]',
    other: "upstreams: [{name: b}]",
    third: "upstreams: [{name: c}]",
  }) + `clientKeys:
  - {name: all, key: "sk-all-0123456789"}
  - {name: limited, key: "sk-limited-0123456789", groups: [primary, third]}
`;
  const loop = loopRuntime(yaml);
  loop.transport.always("a", { status: 500 });
  const headers = (key: string) => ({ authorization: `Bearer ${key}` });
  const send = async (key: string) => {
    const response = await loop.runtime.forwards.get("main")!.handle(
      new Request("http://proxy.test/v1/chat/completions", {
        method: "POST",
        body: '{"model":"m"}',
        headers: headers(key),
      }),
      "127.0.0.1",
    );
    await response.body?.cancel();
    return response;
  };
  assert.equal((await send("sk-all-0123456789")).headers.get("x-upstream"), "b");
  loop.transport.sent.length = 0;
  assert.equal((await send("sk-limited-0123456789")).headers.get("x-upstream"), "c");
  assert.deepEqual(loop.transport.sent, ["a", "a", "c"], "group other is not the key's");

  // The retry budget covers every group: past it, the first group's answer is final.
  loop.transport.sent.length = 0;
  loop.transport.always("a", "hang");
  const budget = loopRuntime(
    config({
      primary: [
        "upstreams: [{name: a}]",
        'models: ["m"]',
        "fallbacks: [{group: other}]",
        'httpClient: {retry: {attempts: 0, budget: "1s"}, timeout: {firstByte: "2s"}}',
      ].join("\n"),
      other: "upstreams: [{name: b}]",
    }).replace(
      "    httpClient: {retry: {attempts: 1, initial: 0}}\n    upstreams: [{name: a}]",
      "    upstreams: [{name: a}]",
    ),
    { realWait: true },
  );
  budget.transport.always("a", "hang");
  const pending = budget.request();
  await new Promise((resolve) => setTimeout(resolve, 0));
  budget.clock.advance(2_000);
  const reply = await pending;
  assert.equal(reply.status, 504);
  assert.deepEqual(budget.transport.sent, ["a"]);
});
