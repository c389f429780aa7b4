import assert from "node:assert/strict";
import OpenAI from "openai";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";

async function withClient(fn: (client: OpenAI, mock: MockUpstream) => Promise<void>) {
  const mock = await startMockUpstream({ name: "sdk-mock" });
  // The mock's origin: append mode, the SDK's /v1/... paths go through as they are.
  const proxy = await startTestProxy(simpleConfig([mock.url], {
    upstream: `auth: {type: bearer, token: "sk-upstream-real"}`,
  }));
  const client = new OpenAI({
    baseURL: `${proxy.url()}/v1`,
    apiKey: "sk-dummy",
    maxRetries: 0,
    timeout: 5000,
  });
  try {
    await fn(client, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

Deno.test("e2e openai sdk: non-streamed chat completion through the proxy", async () => {
  await withClient(async (client, mock) => {
    const completion = await client.chat.completions.create({
      model: "gpt-test",
      messages: [{ role: "user", content: "hello" }],
    });
    assert.equal(completion.object, "chat.completion");
    assert.equal(completion.model, "gpt-test@sdk-mock");
    assert.equal(completion.choices[0]!.message.content, "tok0 tok1 tok2 tok3 tok4 ");
    assert.equal(completion.usage?.total_tokens, 15);
    const seen = mock.requests[0]!;
    assert.equal(seen.path, "/v1/chat/completions");
    assert.equal(seen.headers.get("authorization"), "Bearer sk-upstream-real");
  });
});

Deno.test("e2e openai sdk: streamed chat completion through the proxy", async () => {
  await withClient(async (client) => {
    const stream = await client.chat.completions.create({
      model: "gpt-test",
      messages: [{ role: "user", content: "hello" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    let chunks = 0;
    let usage: number | undefined;
    for await (const chunk of stream) {
      chunks++;
      content += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage.completion_tokens;
    }
    assert.equal(content, "tok0 tok1 tok2 tok3 tok4 ");
    assert.equal(chunks, 6); // 5 content chunks + the usage chunk
    assert.equal(usage, 5);
  });
});

Deno.test("e2e openai sdk: a broken stream surfaces as an error, not a short answer", async () => {
  await withClient(async (client) => {
    const stream = await client.chat.completions.create(
      { model: "gpt-test", messages: [{ role: "user", content: "hello" }], stream: true },
      { headers: { "x-mock-cut-after": "2" } },
    );
    let chunks = 0;
    await assert.rejects(async () => {
      for await (const _ of stream) chunks++;
    });
    assert.equal(chunks, 2);
  });
});

Deno.test("e2e openai sdk: embeddings through the proxy", async () => {
  await withClient(async (client, mock) => {
    const result = await client.embeddings.create({
      model: "emb-test",
      input: ["one", "two", "three"],
      encoding_format: "float",
    });
    assert.equal(result.data.length, 3);
    assert.equal(result.data[0]!.embedding.length, 8);
    assert.equal(result.model, "emb-test@sdk-mock");
    assert.equal(mock.requests[0]!.path, "/v1/embeddings");
  });
});

Deno.test("e2e openai sdk: an upstream API error becomes the SDK's typed error", async () => {
  await withClient(async (client) => {
    await assert.rejects(
      client.chat.completions.create(
        { model: "gpt-test", messages: [{ role: "user", content: "hello" }] },
        { headers: { "x-mock-status": "400" } },
      ),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.status === 400,
    );
  });
});
