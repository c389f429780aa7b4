/**
 * Micro-benchmarks of the SSE usage sniffer, which runs on every chunk of every SSE answer:
 * `deno bench bench/usage_bench.ts`. Each iteration sniffs one realistic 20-chunk stream, one
 * network chunk per event.
 *
 * @module
 */
import { usageSniffer } from "../src/stream/usage.ts";

const encoder = new TextEncoder();

/** Python's `json.dumps` default separators: `", "` and `": "`. */
function spaced(value: unknown): string {
  return JSON.stringify(value).replace(/","/g, '", "').replace(/":/g, '": ')
    .replace(/,"/g, ', "');
}

type Format = (value: unknown) => string;

function openAiChat(format: Format, withUsageKey: boolean): Uint8Array[] {
  const base = {
    id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    object: "chat.completion.chunk",
    created: 1741569952,
    model: "gpt-4o-2024-08-06",
    system_fingerprint: "fp_f9f4fb6dbf",
  };
  const chunks: string[] = [];
  for (let i = 0; i < 19; i++) {
    chunks.push(`data: ${
      format({
        ...base,
        choices: [{
          index: 0,
          delta: { content: ` word${i}` },
          logprobs: null,
          finish_reason: null,
        }],
        ...(withUsageKey ? { usage: null } : {}),
      })
    }\n\n`);
  }
  chunks.push(`data: ${
    format({
      ...base,
      choices: [],
      usage: { prompt_tokens: 19, completion_tokens: 10, total_tokens: 29 },
    })
  }\n\n`);
  chunks.push("data: [DONE]\n\n");
  return chunks.map((c) => encoder.encode(c));
}

function anthropic(format: Format): Uint8Array[] {
  const chunks = [
    `event: message_start\ndata: ${
      format({
        type: "message_start",
        message: {
          id: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
          type: "message",
          role: "assistant",
          content: [],
          model: "claude-sonnet-4-5",
          stop_reason: null,
          usage: { input_tokens: 25, output_tokens: 1 },
        },
      })
    }\n\n`,
  ];
  for (let i = 0; i < 18; i++) {
    chunks.push(
      `event: content_block_delta\ndata: ${
        format({
          type: "content_block_delta",
          index: 0,
          delta: { type: "text_delta", text: ` w${i}` },
        })
      }\n\n`,
    );
  }
  chunks.push(
    `event: message_delta\ndata: ${
      format({
        type: "message_delta",
        delta: { stop_reason: "end_turn" },
        usage: { output_tokens: 15 },
      })
    }\n\n`,
  );
  return chunks.map((c) => encoder.encode(c));
}

function sniff(chunks: Uint8Array[]): void {
  const sniffer = usageSniffer("text/event-stream")!;
  for (const chunk of chunks) sniffer.chunk(chunk);
  if (!sniffer.result()) throw new Error("no usage found");
}

const compactNull = openAiChat(JSON.stringify, true);
const compactPlain = openAiChat(JSON.stringify, false);
const spacedNull = openAiChat(spaced, true);
const anthropicCompact = anthropic(JSON.stringify);

Deno.bench("OpenAI chat, compact, usage:null on every chunk", { group: "sse" }, () => {
  sniff(compactNull);
});
Deno.bench("OpenAI chat, compact, usage only in the last chunk", { group: "sse" }, () => {
  sniff(compactPlain);
});
Deno.bench("OpenAI chat, Python spacing, usage: null on every chunk", { group: "sse" }, () => {
  // Before the change this finds nothing: measured without the result check.
  const sniffer = usageSniffer("text/event-stream")!;
  for (const chunk of spacedNull) sniffer.chunk(chunk);
  sniffer.result();
});
Deno.bench("Anthropic messages, compact", { group: "sse" }, () => {
  sniff(anthropicCompact);
});
