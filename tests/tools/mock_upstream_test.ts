import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`Assertion failed: ${message}`);
}

function assertEquals(actual: unknown, expected: unknown, message = "values differ") {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`Assertion failed: ${message}\n  actual:   ${a}\n  expected: ${e}`);
}

async function withMock(fn: (mock: MockUpstream) => Promise<void>, name?: string) {
  const mock = await startMockUpstream({ name });
  try {
    await fn(mock);
  } finally {
    await mock.close();
  }
}

function chat(
  mock: MockUpstream,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
) {
  return fetch(`${mock.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal,
  });
}

/** Reads the SSE `data:` payloads of a whole body. */
async function sseData(res: Response): Promise<string[]> {
  const text = await res.text();
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
}

Deno.test("mock upstream answers a JSON chat completion with usage and its name", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, { model: "gpt-x", messages: [{ role: "user", content: "hi" }] });
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("x-mock-upstream"), "a");
    const json = await res.json();
    assertEquals(json.object, "chat.completion");
    assertEquals(json.model, "gpt-x@a");
    assertEquals(json.choices[0].message.content, "tok0 tok1 tok2 tok3 tok4 ");
    assertEquals(json.usage, { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
    assertEquals(mock.requests.length, 1);
    assertEquals(mock.requests[0]?.path, "/v1/chat/completions");
    assert(mock.requests[0]?.body.includes('"gpt-x"'), "body recorded");
    assertEquals(mock.requests[0]?.aborted, false);
  }, "a");
});

Deno.test("mock upstream streams N chunks, a usage chunk and [DONE]", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, {
      model: "m",
      stream: true,
      stream_options: { include_usage: true },
    }, { "x-mock-chunks": "7" });
    assertEquals(res.headers.get("content-type"), "text/event-stream");
    const data = await sseData(res);
    assertEquals(data.length, 9, "7 content + usage + [DONE]");
    assertEquals(data.at(-1), "[DONE]");
    const contents = data.slice(0, 7).map((d) => JSON.parse(d).choices[0].delta.content);
    assertEquals(contents, [0, 1, 2, 3, 4, 5, 6].map((i) => `tok${i} `));
    const usage = JSON.parse(data[7]!);
    assertEquals(usage.choices, []);
    assertEquals(usage.usage.completion_tokens, 7);
  });
});

Deno.test("mock upstream omits the usage chunk unless include_usage and reads mock_chunks", async () => {
  await withMock(async (mock) => {
    const data = await sseData(await chat(mock, { stream: true, mock_chunks: 2 }));
    assertEquals(data.length, 3);
    assertEquals(data.at(-1), "[DONE]");
  });
});

Deno.test("mock upstream spaces SSE chunks by x-mock-delay-ms", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, { stream: true }, { "x-mock-delay-ms": "30" });
    const reader = res.body!.getReader();
    const arrivals: number[] = [];
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      arrivals.push(performance.now());
    }
    assert(arrivals.length >= 5, `at least 5 reads, got ${arrivals.length}`);
    const spread = arrivals.at(-1)! - arrivals[0]!;
    assert(spread >= 90, `spread ${spread.toFixed(1)} ms >= 90 ms`);
  });
});

Deno.test("mock upstream marks a hung request aborted when the client gives up", async () => {
  await withMock(async (mock) => {
    const ac = new AbortController();
    const pending = chat(mock, {}, { "x-mock-hang": "1" }, ac.signal);
    await mock.waitForRequests(1);
    ac.abort();
    const error = await pending.catch((e) => e);
    assert(error instanceof Error || error instanceof DOMException, "fetch rejected");
    // The disconnect reaches the server asynchronously.
    for (let i = 0; i < 100 && !mock.requests[0]!.aborted; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(mock.requests[0]!.aborted, true);
  });
});

Deno.test("mock upstream marks a stalled stream aborted when the client cancels", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, { stream: true }, { "x-mock-stall-after": "2" });
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("tok1 ")) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    for (let i = 0; i < 100 && !mock.requests[0]!.aborted; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(mock.requests[0]!.aborted, true);
  });
});

Deno.test("mock upstream close() ends a request hung by x-mock-hang-ms", async () => {
  const mock = await startMockUpstream();
  const hung = chat(mock, {}, { "x-mock-hang-ms": "60000" });
  await mock.waitForRequests(1);
  const started = performance.now();
  await mock.close();
  const res = await hung;
  assertEquals(res.status, 503);
  await res.body?.cancel();
  assert(performance.now() - started < 1000, "close() did not wait for the hang");
});

Deno.test("mock upstream x-mock-cut-after breaks the body mid-stream", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, { stream: true }, { "x-mock-cut-after": "2" });
    const reader = res.body!.getReader();
    let chunks = 0;
    let error: unknown;
    try {
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
        chunks++;
      }
    } catch (e) {
      error = e;
    }
    assert(error !== undefined, "reader rejected instead of ending cleanly");
    assert(chunks >= 1 && chunks <= 2, `got ${chunks} chunks before the cut`);
  });
});

Deno.test("mock upstream script() answers in order, then always(), then normal", async () => {
  await withMock(async (mock) => {
    mock.script({ status: 500 }, { status: 429, retryAfter: "3" }, { body: "raw", status: 201 });
    mock.always({ status: 502 });
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    let raw = "";
    for (let i = 0; i < 4; i++) {
      const res = await chat(mock, {});
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get("retry-after");
      if (res.status === 201) raw = await res.text();
      else await res.body?.cancel();
    }
    assertEquals(statuses, [500, 429, 201, 502]);
    assertEquals(retryAfter, "3");
    assertEquals(raw, "raw");
    mock.always(undefined);
    const res = await chat(mock, {});
    assertEquals(res.status, 200);
    await res.body?.cancel();
  });
});

Deno.test("mock upstream x-mock-status answers an OpenAI error with retry-after headers", async () => {
  await withMock(async (mock) => {
    const res = await chat(mock, {}, {
      "x-mock-status": "503",
      "x-mock-retry-after": "2",
      "x-mock-retry-after-ms": "150",
    });
    assertEquals(res.status, 503);
    assertEquals(res.headers.get("retry-after"), "2");
    assertEquals(res.headers.get("retry-after-ms"), "150");
    const json = await res.json();
    assertEquals(typeof json.error.message, "string");
  });
});

Deno.test("mock upstream /echo returns what arrived", async () => {
  await withMock(async (mock) => {
    const res = await fetch(`${mock.url}/echo/a/b?x=1`, {
      method: "PUT",
      headers: { authorization: "Bearer k" },
      body: "hello",
    });
    const json = await res.json();
    assertEquals(json.method, "PUT");
    assertEquals(json.path, "/echo/a/b");
    assertEquals(json.search, "?x=1");
    assertEquals(json.headers.authorization, "Bearer k");
    assertEquals(json.headers.host, new URL(mock.url).host);
    assertEquals(json.body, "hello");
  });
});

Deno.test("mock upstream serves models, embeddings, 404 and 400", async () => {
  await withMock(async (mock) => {
    const models = await (await fetch(`${mock.url}/v1/models`)).json();
    assertEquals(models.object, "list");
    const emb = await (await fetch(`${mock.url}/v1/embeddings`, {
      method: "POST",
      body: JSON.stringify({ model: "e", input: ["a", "b"] }),
    })).json();
    assertEquals(emb.data.length, 2);
    assertEquals(emb.data[1].embedding.length, 8);
    const missing = await fetch(`${mock.url}/nope`);
    assertEquals(missing.status, 404);
    assert((await missing.json()).error, "error body");
    const bad = await fetch(`${mock.url}/v1/chat/completions`, { method: "POST", body: "{" });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();
  });
});

Deno.test("mock upstream pads with x-mock-body-size and gzips with x-mock-gzip", async () => {
  await withMock(async (mock) => {
    const big = await chat(mock, {}, { "x-mock-body-size": "10000" });
    const text = await big.text();
    assert(Math.abs(text.length - 10000) < 50, `padded length ${text.length}`);
    JSON.parse(text);
    const gz = await chat(mock, {}, { "x-mock-gzip": "1" });
    assertEquals(gz.headers.get("content-encoding"), "gzip");
    // fetch decompresses transparently.
    assertEquals((await gz.json()).object, "chat.completion");
  });
});
