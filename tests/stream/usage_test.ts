import assert from "node:assert/strict";
import {
  MAX_JSON_BYTES,
  type TokenUsage,
  usageFromJsonBytes,
  usageSniffer,
} from "../../src/stream/usage.ts";

const encoder = new TextEncoder();

/** Feeds `chunks` (strings or bytes) to a sniffer for `contentType`; returns its result. */
function sniff(contentType: string, chunks: (string | Uint8Array)[]): TokenUsage | undefined {
  const sniffer = usageSniffer(contentType);
  assert.ok(sniffer, `a sniffer for ${contentType}`);
  for (const chunk of chunks) {
    sniffer.chunk(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  }
  return sniffer.result();
}

const event = (payload: unknown) => `data: ${JSON.stringify(payload)}\n\n`;
const delta = (i: number) =>
  event({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: `t${i}` } }] });
const usageChunk = (prompt: number, completion: number) =>
  event({
    object: "chat.completion.chunk",
    choices: [],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  });

Deno.test("usage: no sniffer for content types that carry no usage", () => {
  assert.equal(usageSniffer("text/plain"), undefined);
  assert.equal(usageSniffer("application/octet-stream"), undefined);
  assert.equal(usageSniffer(""), undefined);
});

Deno.test("usage: JSON body (OpenAI names), also split across chunks", () => {
  const body = JSON.stringify({
    id: "x",
    choices: [{ message: { content: "hello" } }],
    usage: { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 },
  });
  assert.deepEqual(sniff("application/json", [body]), { prompt: 12, completion: 34 });
  assert.deepEqual(sniff("application/json; charset=utf-8", [body]), {
    prompt: 12,
    completion: 34,
  });
  const pieces = [body.slice(0, 7), body.slice(7, 60), body.slice(60)];
  assert.deepEqual(sniff("application/json", pieces), { prompt: 12, completion: 34 });
  // Split inside a multi-byte character: bytes are joined before decoding.
  const unicode = encoder.encode(JSON.stringify({ text: "héllo ✓", usage: { prompt_tokens: 1 } }));
  const cut = unicode.indexOf(0xc3) + 1;
  assert.deepEqual(sniff("application/json", [unicode.subarray(0, cut), unicode.subarray(cut)]), {
    prompt: 1,
    completion: 0,
  });
});

Deno.test("usage: JSON with Anthropic field names", () => {
  const body = JSON.stringify({
    type: "message",
    content: [{ type: "text", text: "hi" }],
    usage: { input_tokens: 7, output_tokens: 3 },
  });
  assert.deepEqual(sniff("application/json", [body]), { prompt: 7, completion: 3 });
});

Deno.test("usage: JSON without usage, with a bad usage, or empty gives nothing", () => {
  assert.equal(sniff("application/json", [JSON.stringify({ id: "x" })]), undefined);
  assert.equal(sniff("application/json", [JSON.stringify({ usage: null })]), undefined);
  assert.equal(sniff("application/json", [JSON.stringify({ usage: "lots" })]), undefined);
  assert.equal(
    sniff("application/json", [JSON.stringify({ usage: { total_tokens: 5 } })]),
    undefined,
  );
  assert.equal(
    sniff("application/json", [JSON.stringify({ usage: { prompt_tokens: "5" } })]),
    undefined,
  );
  assert.equal(sniff("application/json", ["null"]), undefined);
  assert.equal(sniff("application/json", []), undefined);
});

Deno.test("usage: garbage JSON does not throw and gives nothing", () => {
  assert.equal(sniff("application/json", ['{"usage":{"prompt_tokens":5'] /* cut */), undefined);
  assert.equal(sniff("application/json", ["not json at all"]), undefined);
  assert.equal(sniff("application/json", [new Uint8Array([0xff, 0xfe, 0x00, 0x01])]), undefined);
});

Deno.test("usage: a JSON body over the bound is ignored", () => {
  const filler = "x".repeat(MAX_JSON_BYTES);
  const big = JSON.stringify({ filler, usage: { prompt_tokens: 1, completion_tokens: 2 } });
  assert.ok(big.length > MAX_JSON_BYTES);
  assert.equal(sniff("application/json", [big]), undefined);
  // In pieces too: the copy stops once the bound is passed.
  const pieces: string[] = [];
  for (let i = 0; i < big.length; i += 64 * 1024) pieces.push(big.slice(i, i + 64 * 1024));
  assert.equal(sniff("application/json", pieces), undefined);
  // Just under the bound is still read.
  const fits = JSON.stringify({
    filler: "x".repeat(MAX_JSON_BYTES - 200),
    usage: { prompt_tokens: 1, completion_tokens: 2 },
  });
  assert.ok(fits.length <= MAX_JSON_BYTES);
  assert.deepEqual(sniff("application/json", [fits]), { prompt: 1, completion: 2 });
});

Deno.test("usage: SSE with usage in the final chunk", () => {
  const chunks = [delta(0), delta(1), delta(2), usageChunk(10, 3), "data: [DONE]\n\n"];
  assert.deepEqual(sniff("text/event-stream", chunks), { prompt: 10, completion: 3 });
  assert.deepEqual(sniff("text/event-stream; charset=utf-8", chunks), {
    prompt: 10,
    completion: 3,
  });
});

Deno.test("usage: SSE chunks without usage are skipped; none at all gives nothing", () => {
  assert.equal(sniff("text/event-stream", [delta(0), delta(1), "data: [DONE]\n\n"]), undefined);
  // `"usage":null` in every chunk (some providers send it) is not a usage object.
  const nullUsage = event({ choices: [{ delta: { content: "a" } }], usage: null });
  assert.equal(sniff("text/event-stream", [nullUsage, nullUsage, "data: [DONE]\n\n"]), undefined);
  // Chunks with null usage before the real one do not hide it.
  assert.deepEqual(
    sniff("text/event-stream", [nullUsage, usageChunk(4, 5), "data: [DONE]\n\n"]),
    { prompt: 4, completion: 5 },
  );
});

Deno.test("usage: SSE usage line split across chunks (anywhere)", () => {
  const stream = delta(0) + delta(1) + usageChunk(10, 7) + "data: [DONE]\n\n";
  const start = stream.indexOf("data: {", delta(0).length + delta(1).length);
  const usageAt = stream.indexOf('"usage":');
  // Every split point inside the usage event, including inside `"usage":` itself.
  for (let cut = start - 3; cut < stream.indexOf("data: [DONE]"); cut++) {
    assert.deepEqual(
      sniff("text/event-stream", [stream.slice(0, cut), stream.slice(cut)]),
      { prompt: 10, completion: 7 },
      `split at ${cut} (usage at ${usageAt})`,
    );
  }
  // Three-way splits, byte by byte through the usage key.
  for (let a = usageAt - 2; a < usageAt + 10; a++) {
    const b = a + 5;
    assert.deepEqual(
      sniff("text/event-stream", [stream.slice(0, a), stream.slice(a, b), stream.slice(b)]),
      { prompt: 10, completion: 7 },
      `split at ${a} and ${b}`,
    );
  }
});

Deno.test("usage: SSE with CRLF line ends and a stream that ends without a newline", () => {
  const crlf = delta(0).replaceAll("\n", "\r\n") + usageChunk(2, 3).replaceAll("\n", "\r\n");
  assert.deepEqual(sniff("text/event-stream", [crlf]), { prompt: 2, completion: 3 });
  const unterminated = delta(0) + usageChunk(6, 1).trimEnd();
  assert.deepEqual(sniff("text/event-stream", [unterminated]), { prompt: 6, completion: 1 });
});

Deno.test("usage: SSE with Anthropic field names (message_start + message_delta)", () => {
  const chunks = [
    "event: message_start\n" +
    event({ type: "message_start", message: { usage: { input_tokens: 25, output_tokens: 1 } } }),
    "event: content_block_delta\n" +
    event({ type: "content_block_delta", delta: { type: "text_delta", text: "Hi" } }),
    "event: message_delta\n" +
    event({ type: "message_delta", usage: { output_tokens: 15 } }),
  ];
  // Input tokens come from message_start (message.usage), the final output count from
  // message_delta (cumulative: it replaces message_start's 1).
  assert.deepEqual(sniff("text/event-stream", chunks), { prompt: 25, completion: 15 });
  // Newer API versions repeat input_tokens in message_delta: same answer.
  const repeated = [
    chunks[0]!,
    "event: message_delta\n" +
    event({ type: "message_delta", usage: { input_tokens: 25, output_tokens: 9 } }),
  ];
  assert.deepEqual(sniff("text/event-stream", repeated), { prompt: 25, completion: 9 });
});

Deno.test("usage: SSE garbage does not throw", () => {
  const garbage = [
    'data: {"usage":{"prompt_tokens":\n\n', // truncated JSON
    'data: "usage":{}\n\n',
    'data: {not json, "usage":{x}}\n\n',
    new Uint8Array([0xff, 0xfe, 0x22, 0x75]),
    "\n\n",
  ];
  assert.equal(sniff("text/event-stream", garbage), undefined);
  // A valid usage after garbage still counts.
  assert.deepEqual(sniff("text/event-stream", [...garbage, usageChunk(1, 1)]), {
    prompt: 1,
    completion: 1,
  });
});

Deno.test("usage: an endless SSE line without a newline stays bounded and harmless", () => {
  const sniffer = usageSniffer("text/event-stream")!;
  const piece = encoder.encode('data: {"usage":{' + "x".repeat(16 * 1024));
  for (let i = 0; i < 20; i++) sniffer.chunk(piece);
  assert.equal(sniffer.result(), undefined);
});

// --- Any JSON spacing (issue 11, item 5) ---

/** JSON with chosen separators: `item` between members, `key` between a key and its value. */
function dumps(value: unknown, item: string, key: string): string {
  if (Array.isArray(value)) return `[${value.map((v) => dumps(v, item, key)).join(item)}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value).map(([k, v]) =>
      JSON.stringify(k) + key + dumps(v, item, key)
    );
    return `{${members.join(item)}}`;
  }
  return JSON.stringify(value);
}

/** How an upstream writes JSON; the pretty ones span several lines (several `data:` lines). */
const FORMATS: Record<string, (value: unknown) => string> = {
  compact: (v) => JSON.stringify(v),
  python: (v) => dumps(v, ", ", ": "), // json.dumps default
  spaced: (v) => dumps(v, " ,\t", " \t:  "), // whitespace before the colon too
  pretty: (v) => JSON.stringify(v, null, 2),
  prettyTabs: (v) => JSON.stringify(v, null, "\t"),
};

/** One SSE event: an optional `event:` line, the JSON as `data:` lines, a blank line. */
function sseEvent(json: string, name?: string): string {
  const data = json.split("\n").map((line) => `data: ${line}\n`).join("");
  return (name ? `event: ${name}\n` : "") + data + "\n";
}

/** Model output that spells a usage object: escaped in JSON, it must never count. */
const BAIT = 'héllo ✓ "usage": {"prompt_tokens": 999, "completion_tokens": 999}, "usage":{';

/** Realistic streams in each shape the sniffer reads, with the usage they report. */
const SHAPES: Record<
  string,
  { events: (format: (value: unknown) => string) => string; usage: TokenUsage }
> = {
  // Chat completions with include_usage: `usage: null` on every chunk but the last.
  openaiChat: {
    events: (f) => {
      const base = { id: "chatcmpl-1", object: "chat.completion.chunk", model: "gpt-4o" };
      let out = "";
      for (const content of ["Hi", BAIT, "!"]) {
        out += sseEvent(f({
          ...base,
          choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }],
          usage: null,
        }));
      }
      out += sseEvent(f({
        ...base,
        choices: [],
        usage: {
          prompt_tokens: 11,
          completion_tokens: 7,
          total_tokens: 18,
          prompt_tokens_details: { cached_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0 },
        },
      }));
      return out + "data: [DONE]\n\n";
    },
    usage: { prompt: 11, completion: 7 },
  },
  // Responses API: `usage: null` while in progress, the counts in `response.completed`.
  openaiResponses: {
    events: (f) => {
      const response = { id: "resp_1", object: "response", model: "gpt-4o" };
      return sseEvent(
        f({
          type: "response.created",
          response: { ...response, status: "in_progress", usage: null },
        }),
        "response.created",
      ) +
        sseEvent(
          f({ type: "response.output_text.delta", item_id: "msg_1", delta: BAIT }),
          "response.output_text.delta",
        ) +
        sseEvent(
          f({
            type: "response.completed",
            response: {
              ...response,
              status: "completed",
              output: [{ type: "message", content: [{ type: "output_text", text: BAIT }] }],
              usage: {
                input_tokens: 36,
                input_tokens_details: { cached_tokens: 0 },
                output_tokens: 87,
                output_tokens_details: { reasoning_tokens: 0 },
                total_tokens: 123,
              },
            },
          }),
          "response.completed",
        );
    },
    usage: { prompt: 36, completion: 87 },
  },
  // Anthropic: input tokens in message_start's message.usage, the output count in message_delta.
  anthropic: {
    events: (f) =>
      sseEvent(
        f({
          type: "message_start",
          message: {
            id: "msg_1",
            type: "message",
            role: "assistant",
            content: [],
            stop_reason: null,
            usage: { input_tokens: 25, output_tokens: 1 },
          },
        }),
        "message_start",
      ) +
      sseEvent(
        f({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: BAIT } }),
        "content_block_delta",
      ) +
      sseEvent(
        f({
          type: "message_delta",
          delta: { stop_reason: "end_turn" },
          usage: { output_tokens: 15 },
        }),
        "message_delta",
      ) +
      sseEvent(f({ type: "message_stop" }), "message_stop"),
    usage: { prompt: 25, completion: 15 },
  },
};

for (const [shape, { events, usage }] of Object.entries(SHAPES)) {
  Deno.test(`usage: SSE ${shape} is read in every JSON spacing, CRLF line ends too`, () => {
    for (const [name, format] of Object.entries(FORMATS)) {
      const stream = events(format);
      assert.deepEqual(sniff("text/event-stream", [stream]), usage, name);
      const crlf = stream.replaceAll("\n", "\r\n");
      assert.deepEqual(sniff("text/event-stream", [crlf]), usage, `${name}, CRLF`);
      const cr = stream.replaceAll("\n", "\r");
      assert.deepEqual(sniff("text/event-stream", [cr]), usage, `${name}, CR`);
    }
  });

  Deno.test(`usage: SSE ${shape} split at every byte, in every JSON spacing`, () => {
    for (const [name, format] of Object.entries(FORMATS)) {
      for (const ends of ["\n", "\r\n"]) {
        const bytes = encoder.encode(events(format).replaceAll("\n", ends));
        for (let cut = 1; cut < bytes.length; cut++) {
          assert.deepEqual(
            sniff("text/event-stream", [bytes.subarray(0, cut), bytes.subarray(cut)]),
            usage,
            `${name} ${JSON.stringify(ends)} split at ${cut}`,
          );
        }
        // One byte per chunk: every boundary at once.
        const single = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
        assert.deepEqual(sniff("text/event-stream", single), usage, `${name}, byte by byte`);
      }
    }
  });
}

Deno.test("usage: SSE `usage: null` in any spacing counts as nothing", () => {
  for (const [name, format] of Object.entries(FORMATS)) {
    const chunk = sseEvent(format({ choices: [{ delta: { content: "a" } }], usage: null }));
    assert.equal(sniff("text/event-stream", [chunk, chunk, "data: [DONE]\n\n"]), undefined, name);
  }
});

Deno.test("usage: SSE content that spells a usage object never counts", () => {
  for (const [name, format] of Object.entries(FORMATS)) {
    const chunk = sseEvent(format({ choices: [{ delta: { content: BAIT } }] }));
    assert.equal(sniff("text/event-stream", [chunk, "data: [DONE]\n\n"]), undefined, name);
    // A `usage` string value (not a key) neither.
    const value = sseEvent(format({ type: "usage", kind: ["usage", { usage: 5 }] }));
    assert.equal(sniff("text/event-stream", [value]), undefined, `${name}, string value`);
  }
});

Deno.test("usage: SSE event over the bound is skipped whole; the next one still counts", () => {
  const sniffer = usageSniffer("text/event-stream")!;
  const big = encoder.encode(
    'data: {"usage": {"prompt_tokens": 999}, "filler": "' + "x".repeat(64 * 1024),
  );
  for (let i = 0; i < 20; i++) sniffer.chunk(big); // one event of 1.3 MB, never ended
  sniffer.chunk(encoder.encode('"}\n\n'));
  sniffer.chunk(encoder.encode('data: {"usage": {"completion_tokens": 4}}\n\n'));
  assert.deepEqual(sniffer.result(), { prompt: 0, completion: 4 });
});

Deno.test("usage: JSON bodies in every spacing (OpenAI, Responses API, Anthropic)", () => {
  const bodies: [unknown, TokenUsage][] = [
    [{
      id: "chatcmpl-1",
      choices: [{ message: { content: BAIT } }],
      usage: { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 },
    }, { prompt: 12, completion: 34 }],
    [{
      id: "resp_1",
      object: "response",
      output: [{ type: "message", content: [{ type: "output_text", text: BAIT }] }],
      usage: { input_tokens: 5, output_tokens: 6, total_tokens: 11 },
    }, { prompt: 5, completion: 6 }],
    [{
      type: "message",
      content: [{ type: "text", text: BAIT }],
      usage: { input_tokens: 7, output_tokens: 3 },
    }, {
      prompt: 7,
      completion: 3,
    }],
  ];
  const formats = { ...FORMATS, crlf: (v: unknown) => dumps(v, ",\r\n  ", "\r\n:\r\n") };
  for (const [body, usage] of bodies) {
    for (const [name, format] of Object.entries(formats)) {
      const bytes = encoder.encode(format(body));
      assert.deepEqual(usageFromJsonBytes(bytes), usage, name);
      const cut = bytes.length >> 1;
      assert.deepEqual(
        sniff("application/json", [bytes.subarray(0, cut), bytes.subarray(cut)]),
        usage,
        `${name}, streamed`,
      );
    }
  }
});
