import assert from "node:assert/strict";
import OpenAI from "openai";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { formatDigest } from "../../src/keys/digest.ts";
import { assertErrorBody } from "../_helpers/raw_http.ts";

const KEY_A = "sk-client-team-a-7f3e9c2b1d";
const KEY_B = "sk-client-team-b-5a8d0e4c6f";
const UPSTREAM_TOKEN = "sk-upstream-real-0123456789";

/** Two groups (chat, other) on one mock; `/other/*` routes to `other`. */
function config(mockUrl: string, keys: string, forwardExtra = ""): string {
  return `httpServer:
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: chat
      routing: [{path: "/other/*", targetGroup: other}]
${forwardExtra}
  admin: {port: 0}
upstreams:
  - name: u
    url: "${mockUrl}"
    auth: {type: bearer, token: "${UPSTREAM_TOKEN}"}
upstreamGroups:
  - name: chat
    upstreams: [{name: u}]
    httpClient: {retry: {attempts: 0}}
  - name: other
    upstreams: [{name: u}]
    httpClient: {retry: {attempts: 0}}
clientKeys:
${keys}
`;
}

async function withProxy(
  keys: string,
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
  forwardExtra = "",
) {
  const mock = await startMockUpstream({ name: "keys-mock" });
  const proxy = await startTestProxy(config(mock.url, keys, forwardExtra), {
    env: { TEAM_A_KEY: KEY_A },
    captureLogs: true,
  });
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

async function post(
  url: string,
  headers: Record<string, string>,
  body: unknown = { model: "gpt-4o", messages: [] },
): Promise<{ status: number; headers: Headers; json: { error?: { code: string; type: string } } }> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, json: await response.json() };
}

const TEAM_A = `  - name: team_a
    key: "\${TEAM_A_KEY}"
    groups: [chat]
    models: ["gpt-4o*"]
  - name: team_b
    key: "${formatDigest(KEY_B)}"`;

Deno.test("e2e client keys: 401 missing_api_key and invalid_api_key in the OpenAI shape", async () => {
  await withProxy(TEAM_A, async (proxy, mock) => {
    const missing = await post(proxy.url(), {});
    assert.equal(missing.status, 401);
    assert.deepEqual(missing.json.error?.code, "missing_api_key");
    assert.equal(missing.json.error?.type, "authentication_error");
    const wrong = await post(proxy.url(), { authorization: `Bearer ${KEY_A}x` });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error?.code, "invalid_api_key");
    assert.ok(!JSON.stringify(wrong.json).includes(KEY_A), "the error does not echo the key");
    assert.ok(wrong.headers.get("x-request-id"));
    assert.equal(mock.requests.length, 0, "nothing reached the upstream");
  });
});

Deno.test("e2e client keys: 403 group_not_allowed and model_not_allowed after routing", async () => {
  await withProxy(TEAM_A, async (proxy, mock) => {
    const group = await fetch(`${proxy.url()}/other/x`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY_A}` },
      body: "{}",
    });
    assert.equal(group.status, 403);
    const groupBody = await group.json();
    assert.equal(groupBody.error.code, "group_not_allowed");
    assert.equal(groupBody.error.type, "permission_error");
    const model = await post(proxy.url(), { authorization: `Bearer ${KEY_A}` }, {
      model: "llama-3",
    });
    assert.equal(model.status, 403);
    assert.equal(model.json.error?.code, "model_not_allowed");
    // team_b (written as a digest) has no restrictions.
    const other = await fetch(`${proxy.url()}/other/x`, {
      method: "POST",
      headers: { "api-key": KEY_B },
      body: "{}",
    });
    assert.notEqual(other.status, 403);
    await other.body?.cancel();
    assert.equal(mock.requests.length, 1);
  });
});

Deno.test("e2e client keys: a key limited to some models fails closed on a body whose model cannot be read", async () => {
  await withProxy(TEAM_A, async (proxy, mock) => {
    const auth = { authorization: `Bearer ${KEY_A}` };
    for (
      const body of [
        JSON.stringify({ messages: [] }), // no model: the upstream's default would answer
        '{"model": "llama-3", "temperature": NaN}', // Python's json takes this; JSON.parse not
        "\ufeff" + JSON.stringify({ model: "llama-3" }), // a byte-order mark first
        JSON.stringify({ model: ["gpt-4o"] }),
        "model=gpt-4o",
      ]
    ) {
      const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", ...auth },
        body,
      });
      assert.equal(response.status, 403, body);
      assert.equal((await response.json()).error.code, "model_not_allowed");
    }
    assert.equal(mock.requests.length, 0, "nothing reached the upstream");
    // Without a body nothing asks for a model: a GET passes.
    const list = await fetch(`${proxy.url()}/v1/models`, { headers: auth });
    assert.notEqual(list.status, 403);
    await list.body?.cancel();
  });
});

Deno.test("e2e client keys: every header form works and no key reaches the upstream or the log", async () => {
  await withProxy(TEAM_A, async (proxy, mock) => {
    for (
      const headers of <Record<string, string>[]> [
        { authorization: `Bearer ${KEY_A}` },
        { "x-api-key": KEY_A },
        { "api-key": KEY_A },
        { "x-api-key": KEY_B, "api-key": KEY_B },
      ]
    ) {
      const answer = await post(proxy.url(), headers);
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
    }
    assert.equal(mock.requests.length, 4);
    for (const seen of mock.requests) {
      assert.equal(seen.headers.get("authorization"), `Bearer ${UPSTREAM_TOKEN}`);
      assert.equal(seen.headers.get("x-api-key"), null);
      assert.equal(seen.headers.get("api-key"), null);
      const everything = JSON.stringify([...seen.headers]) + seen.body + seen.url;
      assert.ok(!everything.includes(KEY_A) && !everything.includes(KEY_B));
    }
    await proxy.stop();
    const logs = proxy.logs.join("\n");
    assert.ok(!logs.includes(KEY_A) && !logs.includes(KEY_B), "no key in the log");
    assert.match(logs, /key=team_a/);
    assert.match(logs, /key=team_b/);
  });
});

Deno.test("e2e client keys: a key limited to 5 req/s gets 429 rate_limited with Retry-After on the 6th", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"
    ratelimit: {perSecond: 5, burst: 5}`;
  await withProxy(keys, async (proxy) => {
    const client = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
    for (let i = 0; i < 5; i++) {
      await client.chat.completions.create({ model: "m", messages: [] });
    }
    const refused = await client.chat.completions.create({ model: "m", messages: [] })
      .then(() => undefined, (error) => error);
    assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
    assert.equal(refused.status, 429);
    assert.equal(refused.code, "rate_limited");
    assert.equal(refused.headers.get("retry-after"), "1");
    const metrics = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
    assert.match(metrics, /llmproxy_ratelimit_rejections_total\{scope="key",name="team_a"\} 1/);
  });
});

Deno.test("e2e client keys: 1,000 tokens/min are refused once the usage is charged (JSON and SSE)", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"
    tokens: {perMinute: 1000}
  - name: team_b
    key: "${KEY_B}"
    tokens: {perMinute: 1000}`;
  await withProxy(keys, async (proxy) => {
    // The mock reports 10 prompt tokens + one completion token per chunk: 1,005 in all.
    const json = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
    const first = await json.chat.completions.create({
      model: "m",
      messages: [],
    }, { headers: { "x-mock-chunks": "995" } });
    assert.equal(first.usage?.total_tokens, 1_005);
    const refused = await json.chat.completions.create({ model: "m", messages: [] })
      .then(() => undefined, (error) => error);
    assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
    assert.equal(refused.code, "rate_limited");
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);

    const sse = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_B, maxRetries: 0 });
    const stream = await sse.chat.completions.create({
      model: "m",
      messages: [],
      stream: true,
      stream_options: { include_usage: true },
    }, { headers: { "x-mock-chunks": "995" } });
    for await (const _ of stream) { /* drain */ }
    const refusedStream = await sse.chat.completions.create({
      model: "m",
      messages: [],
      stream: true,
    }).then(() => undefined, (error) => error);
    assert.ok(refusedStream instanceof OpenAI.RateLimitError, String(refusedStream));
  });
});

Deno.test("e2e client keys: a clientAuth none forward does not read keys", async () => {
  await withProxy(TEAM_A, async (proxy, mock) => {
    const answer = await post(proxy.url(), {});
    assert.equal(answer.status, 200);
    assert.equal(mock.requests[0]!.headers.get("authorization"), `Bearer ${UPSTREAM_TOKEN}`);
  }, "      clientAuth: none");
});

/** The embedded default config on free ports. */
async function defaultConfig(): Promise<string> {
  const text = await Deno.readTextFile(new URL("../../config.default.yaml", import.meta.url));
  return text.replace("port: 3000", "port: 0").replace("port: 9000", "port: 0");
}

Deno.test("e2e client keys: the default config without LLMPROXY_KEY starts, warns and answers 401 to everything", async () => {
  const proxy = await startTestProxy(await defaultConfig(), { captureLogs: true });
  try {
    for (
      const headers of <Record<string, string>[]> [
        {},
        { authorization: "Bearer " },
        { authorization: "Bearer anything" },
        { "x-api-key": "sk-whatever" },
      ]
    ) {
      const answer = await post(proxy.url(), headers);
      assert.equal(answer.status, 401, JSON.stringify(headers));
    }
    assert.match(proxy.logs.join("\n"), /client key "default" is empty/);
  } finally {
    await proxy.stop();
  }
});

Deno.test("e2e client keys: the default config with LLMPROXY_KEY lets that key through", async () => {
  const mock = await startMockUpstream({ name: "default-mock" });
  // The default config's routes, with its OpenAI origin replaced by the mock.
  const text = (await defaultConfig()).replace(
    'url: "https://api.openai.com"',
    `url: "${mock.url}"`,
  );
  const proxy = await startTestProxy(text, { env: { LLMPROXY_KEY: KEY_A } });
  try {
    const client = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: "m", messages: [] });
    assert.equal(completion.object, "chat.completion");
    assert.equal((await post(proxy.url(), { authorization: "Bearer nope" })).status, 401);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e client keys: GET /keys (token-protected), the key metrics, and no key in any admin answer", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"
    tokens: {perMinute: 100000}
    budget: {tokens: 1000000, period: "1d"}
  - name: team_b
    key: "${KEY_B}"`;
  const mock = await startMockUpstream({ name: "keys-admin-mock" });
  const yaml = config(mock.url, keys).replace(
    "admin: {port: 0}",
    'admin: {port: 0, token: "admin-secret-token"}',
  );
  const proxy = await startTestProxy(yaml, { env: { TEAM_A_KEY: KEY_A } });
  try {
    const client = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
    await client.chat.completions.create({ model: "m", messages: [] });
    await client.chat.completions.create({ model: "m", messages: [] });
    assert.equal((await post(proxy.url(), { "x-api-key": KEY_B }, { model: "x" })).status, 200);

    const refused = await fetch(`${proxy.adminUrl()}/keys`);
    assert.equal(refused.status, 401);
    await refused.body?.cancel();
    const auth = { authorization: "Bearer admin-secret-token" };
    const answer = await fetch(`${proxy.adminUrl()}/keys`, { headers: auth });
    assert.equal(answer.status, 200);
    const text = await answer.text();
    const body = JSON.parse(text);
    const [a, b] = body.keys;
    assert.equal(a.name, "team_a");
    assert.equal(a.requests, 2);
    assert.equal(a.tokensThisMinute, 30); // 2 × (10 prompt + 5 completion)
    assert.equal(a.budget.used, 30);
    assert.equal(a.budget.remaining, 1_000_000 - 30);
    assert.equal(
      a.budget.resetsAt,
      new Date(Math.ceil(Date.now() / 86_400_000) * 86_400_000).toISOString(),
    );
    assert.deepEqual(b, { name: "team_b", requests: 1, tokensThisMinute: 15, budget: null });

    const metrics = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
    assert.match(metrics, /llmproxy_key_requests_total\{key="team_a",status="200"\} 2/);
    assert.match(metrics, /llmproxy_key_requests_total\{key="team_b",status="200"\} 1/);
    assert.match(metrics, /llmproxy_key_tokens_total\{key="team_a",type="prompt"\} 20/);
    assert.match(metrics, /llmproxy_key_tokens_total\{key="team_a",type="completion"\} 10/);

    const shown = [text, metrics];
    for (const path of ["/config", "/upstreams", "/health", "/ready"]) {
      shown.push(await (await fetch(`${proxy.adminUrl()}${path}`, { headers: auth })).text());
    }
    for (const page of shown) {
      assert.ok(!page.includes(KEY_A) && !page.includes(KEY_B), page.slice(0, 200));
    }
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e client keys: a spent budget is 429 budget_exceeded, and stays spent across a restart with state.path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-keys-" });
  const mock = await startMockUpstream({ name: "budget-mock" });
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"
    budget: {tokens: 1000, period: "1d"}
state:
  path: "${dir}/state.db"`;
  const yaml = config(mock.url, keys);
  const start = () => startTestProxy(yaml, { env: { TEAM_A_KEY: KEY_A } });
  try {
    const first = await start();
    try {
      const client = new OpenAI({ baseURL: `${first.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
      // Admitted while under the budget; its 1,005 tokens spend it.
      await client.chat.completions.create({ model: "m", messages: [] }, {
        headers: { "x-mock-chunks": "995" },
      });
      const spent = await post(first.url(), { authorization: `Bearer ${KEY_A}` });
      assert.equal(spent.status, 429);
      assert.equal(spent.json.error?.code, "budget_exceeded");
    } finally {
      await first.stop();
    }

    const second = await start();
    try {
      const client = new OpenAI({ baseURL: `${second.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
      const refused = await client.chat.completions.create({ model: "m", messages: [] })
        .then(() => undefined, (error) => error);
      assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
      assert.equal(refused.code, "budget_exceeded");
      // The period's reset: the next midnight UTC.
      const untilMidnight = (Math.ceil(Date.now() / 86_400_000) * 86_400_000 - Date.now()) / 1000;
      const retryAfter = Number(refused.headers.get("retry-after"));
      assert.ok(Math.abs(retryAfter - untilMidnight) <= 2, `${retryAfter} vs ${untilMidnight}`);
      assert.equal(mock.requests.length, 1, "nothing more reached the upstream");
    } finally {
      await second.stop();
    }
  } finally {
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e client keys: every stream is counted; a client that did not ask for usage never sees it, one that asked sees it once", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"`;
  await withProxy(keys, async (proxy, mock) => {
    const client = new OpenAI({ baseURL: `${proxy.url()}/v1`, apiKey: KEY_A, maxRetries: 0 });
    const collect = async (includeUsage: boolean) => {
      const stream = await client.chat.completions.create({
        model: "m",
        messages: [],
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      return chunks;
    };

    const plain = await collect(false);
    assert.equal(plain.length, 5, "the five content chunks only");
    assert.ok(plain.every((c) => c.usage === undefined && c.choices.length === 1));
    assert.equal(
      plain.map((c) => c.choices[0]!.delta.content).join(""),
      "tok0 tok1 tok2 tok3 tok4 ",
    );
    const sent = JSON.parse(mock.requests[0]!.body);
    assert.deepEqual(sent.stream_options, { include_usage: true }, "the proxy asked for usage");

    const asked = await collect(true);
    assert.equal(asked.length, 6);
    assert.equal(asked.filter((c) => c.usage).length, 1, "the usage chunk once");
    assert.equal(asked.at(-1)!.usage?.total_tokens, 15);

    const keysAnswer = await (await fetch(`${proxy.adminUrl()}/keys`)).json();
    assert.equal(keysAnswer.keys[0].tokensThisMinute, 30, "both streams were charged");
  });
});

Deno.test("e2e client keys: a stream asked for with an escaped key is counted too", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"`;
  await withProxy(keys, async (proxy, mock) => {
    // Every JSON reader takes "str\u0065am" as "stream"; a substring test did not.
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY_A}`, "content-type": "application/json" },
      body: '{"model":"m","messages":[],"str\\u0065am":true}',
    });
    const text = await response.text();
    assert.equal(response.status, 200);
    assert.ok(!text.includes('"usage"'), "the client, which did not ask, sees no usage");
    assert.deepEqual(JSON.parse(mock.requests[0]!.body).stream_options, { include_usage: true });
    const keysAnswer = await (await fetch(`${proxy.adminUrl()}/keys`)).json();
    assert.equal(keysAnswer.keys[0].tokensThisMinute, 15, "the stream was charged");
  });
});

Deno.test("e2e client keys: a body naming its model in two spellings is refused (400), upstream untouched", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"`;
  await withProxy(keys, async (proxy, mock) => {
    // Go's JSON reader (Ollama's) takes "Model" for "model": the key would be checked against
    // one model and the upstream run another.
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY_A}`, "content-type": "application/json" },
      body: '{"model":"m","Model":"other","messages":[]}',
    });
    await assertErrorBody(response, 400, "ambiguous_member");
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e client keys: a usage chunk taken out of a stream of declared length leaves a complete answer", async () => {
  const keys = `  - name: team_a
    key: "\${TEAM_A_KEY}"`;
  await withProxy(keys, async (proxy, mock) => {
    const chunk = (content: string) =>
      `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${content}"}}],"usage":null}\n\n`;
    const usage =
      'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n';
    // A literal body: the mock sends it with a Content-Length, as a canned or cached stream has.
    mock.script({
      headers: { "content-type": "text/event-stream" },
      body: chunk("a") + chunk("b") + usage + "data: [DONE]\n\n",
    });
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY_A}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [], stream: true }),
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    const declared = response.headers.get("content-length");
    if (declared !== null) {
      assert.equal(Number(declared), new TextEncoder().encode(text).byteLength);
    }
    assert.ok(text.endsWith("data: [DONE]\n\n"), text);
    assert.ok(!text.includes('"usage"'), text);
    assert.equal(text.match(/^data: /gm)?.length, 3);
  });
});
