import assert from "node:assert/strict";
import {
  requestWithUsage as requestWithUsageOf,
  withoutUsageChunk,
} from "../../src/stream/include_usage.ts";
import { RequestBody } from "../../src/pipeline/json_body.ts";

import type { BodyReader } from "../../src/transport/transport.ts";

const requestWithUsage = (path: string, body: Uint8Array<ArrayBuffer> | null) =>
  requestWithUsageOf(path, new RequestBody(body));

const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

Deno.test("requestWithUsage: a chat stream without stream_options gets it, every other byte kept", () => {
  const body = '{ "model": "m",\n  "stream": true, "messages": [] }';
  assert.equal(
    dec(requestWithUsage("/v1/chat/completions", enc(body))),
    '{"stream_options":{"include_usage":true}, "model": "m",\n  "stream": true, "messages": [] }',
  );
});

Deno.test("requestWithUsage: stream_options without include_usage gets it added; other fields kept", () => {
  const out = requestWithUsage(
    "/v1/chat/completions",
    enc('{"stream":true,"stream_options":{"include_usage":false,"x":1}}'),
  );
  assert.deepEqual(JSON.parse(dec(out)), {
    stream: true,
    stream_options: { include_usage: true, x: 1 },
  });
  const fromNull = requestWithUsage(
    "/chat/completions",
    enc('{"stream":true,"stream_options":null}'),
  );
  assert.deepEqual(JSON.parse(dec(fromNull)).stream_options, { include_usage: true });
});

Deno.test("requestWithUsage: nothing changes when not needed or not understood", () => {
  const unchanged = [
    ["/v1/chat/completions", '{"stream":true,"stream_options":{"include_usage":true}}'],
    ["/v1/chat/completions", '{"model":"m"}'],
    ["/v1/chat/completions", '{"stream":"yes"}'],
    ["/v1/chat/completions", "not json"],
    ["/v1/chat/completions", '[{"stream":true}]'],
    ["/v1/chat/completions", '{"stream":true,"stream_options":"x"}'],
    ["/v1/completions", '{"stream":true}'],
    ["/v1/messages", '{"stream":true}'],
  ];
  for (const [path, body] of unchanged) {
    assert.equal(requestWithUsage(path!, enc(body!)), undefined, `${path} ${body}`);
  }
  assert.equal(requestWithUsage("/v1/chat/completions", null), undefined);
});

const CONTENT =
  'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n';
const CONTENT_CLEAN = 'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n';
const USAGE =
  'data: {"id":"c","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}\n\n';
const DONE = "data: [DONE]\n\n";

/** A reader giving `chunks` in order. */
function readerOf(chunks: Uint8Array[]): BodyReader & { cancelled?: unknown } {
  let i = 0;
  const reader: BodyReader & { cancelled?: unknown } = {
    read: () =>
      Promise.resolve(
        i < chunks.length ? { done: false, value: chunks[i++]! } : { done: true, value: undefined },
      ),
    cancel: (reason) => {
      reader.cancelled = reason;
      return Promise.resolve();
    },
  };
  return reader;
}

async function drain(reader: BodyReader): Promise<string> {
  let out = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    assert.ok(value.byteLength > 0, "never an empty chunk");
    out += dec(value);
  }
}

Deno.test("withoutUsageChunk: drops the usage-only chunk and usage:null, however the bytes are split", async () => {
  const whole = CONTENT + CONTENT + USAGE + DONE;
  const bytes = enc(whole);
  for (const size of [1, 2, 3, 7, 50, bytes.byteLength]) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.byteLength; i += size) chunks.push(bytes.subarray(i, i + size));
    const seen: Uint8Array[] = [];
    const out = await drain(withoutUsageChunk(readerOf(chunks), (c) => seen.push(c)));
    assert.equal(out, CONTENT_CLEAN + CONTENT_CLEAN + DONE, `split every ${size} bytes`);
    assert.equal(seen.map(dec).join(""), whole, "the sniffer sees the upstream's bytes");
  }
});

Deno.test("withoutUsageChunk: CRLF events, events without usage, and an unfinished tail pass on", async () => {
  const crlf = USAGE.replace("\n\n", "\r\n\r\n");
  const other = "event: ping\ndata: {}\n\n";
  const out = await drain(
    withoutUsageChunk(readerOf([enc(other + crlf + 'data: {"partial":')]), () => {}),
  );
  assert.equal(out, other + 'data: {"partial":');
});

Deno.test("withoutUsageChunk: a usage chunk with choices is not removed (only usage:null is)", async () => {
  const withChoices = 'data: {"choices":[{"index":0}],"usage":{"total_tokens":1}}\n\n';
  assert.equal(await drain(withoutUsageChunk(readerOf([enc(withChoices)]), () => {})), withChoices);
});

Deno.test("withoutUsageChunk: cancel reaches the upstream reader", async () => {
  const source = readerOf([]);
  await withoutUsageChunk(source, () => {}).cancel("gone");
  assert.equal(source.cancelled, "gone");
});

Deno.test("requestWithUsage: a stream named with escapes is still counted (it was sent without usage)", () => {
  const body = '{"str\\u0065am":true,"messages":[]}';
  assert.equal(
    dec(requestWithUsage("/v1/chat/completions", enc(body))),
    '{"stream_options":{"include_usage":true},"str\\u0065am":true,"messages":[]}',
  );
});

Deno.test("requestWithUsage: a body JSON.parse refuses elsewhere (NaN) still asks for usage", () => {
  // Python's JSON reader, which many upstreams use, takes NaN: the stream would go uncounted.
  const inserted = '{"stream":true,"temperature":NaN,"messages":[]}';
  assert.equal(
    dec(requestWithUsage("/v1/chat/completions", enc(inserted))),
    '{"stream_options":{"include_usage":true},"stream":true,"temperature":NaN,"messages":[]}',
  );
  const unreadable = '{"stream":true,"stream_options":{"include_usage":false,"x":NaN},"n":1}';
  assert.equal(
    dec(requestWithUsage("/v1/chat/completions", enc(unreadable))),
    '{"stream":true,"stream_options":{"include_usage":true},"n":1}',
  );
});

Deno.test("requestWithUsage: only stream_options changes, byte for byte, every duplicate of it", () => {
  const text = '{"stream" : true, "stream_options" : {"include_usage":false,"x":1},\n' +
    ' "m":[1], "stream_options":{"include_usage":false,"x":1}}';
  const out = dec(requestWithUsage("/v1/chat/completions", enc(text)));
  assert.equal(
    out,
    '{"stream" : true, "stream_options" : {"include_usage":true,"x":1},\n' +
      ' "m":[1], "stream_options":{"include_usage":true,"x":1}}',
  );
  // The same when the model was read first (model routing).
  const routed = new RequestBody(enc(text));
  routed.model();
  assert.equal(dec(requestWithUsageOf("/v1/chat/completions", routed)), out);
});

Deno.test("requestWithUsage: a body with a UTF-8 byte order mark, and a 400 KB prompt", () => {
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...enc('{"stream":true}')]);
  assert.deepEqual(
    requestWithUsage("/v1/chat/completions", bom),
    new Uint8Array([
      0xef,
      0xbb,
      0xbf,
      ...enc('{"stream_options":{"include_usage":true},"stream":true}'),
    ]),
  );
  const prompt = 'say \\"stream\\": true {[ '.repeat(16_000);
  const large = `{"messages":[{"role":"user","content":"${prompt}"}],"stream":true}`;
  assert.equal(
    dec(requestWithUsage("/v1/chat/completions", enc(large))),
    `{"stream_options":{"include_usage":true},${large.slice(1)}`,
  );
  const notStreamed = `{"messages":[{"role":"user","content":"${prompt}"}],"stream":false}`;
  assert.equal(requestWithUsage("/v1/chat/completions", enc(notStreamed)), undefined);
});
