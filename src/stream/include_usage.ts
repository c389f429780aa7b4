/**
 * Usage for every OpenAI chat stream. A streamed chat request that did not ask for usage
 * (`stream_options.include_usage`) is sent asking for it, so its tokens can be charged; the
 * answer's usage-only chunk — and the `"usage":null` the other chunks then carry — is removed
 * from what the client receives, so it sees what it would have seen without the proxy.
 *
 * @module
 */
import type { BodyReader } from "../transport/transport.ts";
import { concatBytes } from "../bytes.ts";
import { MAX_EVENT_CHARS } from "./usage.ts";
import type { RequestBody } from "../pipeline/json_body.ts";

const encoder = new TextEncoder();

/**
 * The body to send for a streamed chat request on `path` that did not ask for usage, with
 * `include_usage` added; undefined when nothing needs changing (not a chat stream, usage
 * already asked for, not JSON). Only the added member differs from the client's bytes when
 * `stream_options` is absent; otherwise the body is re-serialised.
 */
export function requestWithUsage(
  path: string,
  body: RequestBody,
): Uint8Array<ArrayBuffer> | undefined {
  const bytes = body.bytes;
  if (!bytes || !path.endsWith("/chat/completions")) return undefined;
  // Most chat requests are not streamed: a substring test spares them the parse (unless
  // something else needed it already).
  if (!body.text().includes('"stream"')) return undefined;
  const parsed = body.json();
  if (parsed === null || parsed.stream !== true) return undefined;
  const options = parsed.stream_options;
  if (options === undefined) {
    // After the opening brace: every other byte stays as the client sent it. `stream` is a
    // member, so a comma always follows.
    const brace = bytes.indexOf(0x7b);
    return concatBytes([
      bytes.subarray(0, brace + 1),
      encoder.encode('"stream_options":{"include_usage":true},'),
      bytes.subarray(brace + 1),
    ]);
  }
  if (options !== null && !isObject(options)) return undefined; // invalid: the upstream says so
  if (options?.include_usage === true) return undefined;
  // A copy: the parsed body stays what the client sent.
  return encoder.encode(
    JSON.stringify({ ...parsed, stream_options: { ...options, include_usage: true } }),
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** An SSE event's end: a blank line, in any of the line-end forms SSE allows. */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;
const USAGE_NULL = /,\s*"usage"\s*:\s*null/g;

/**
 * A reader over `source` (an OpenAI chat SSE body the proxy asked usage for) without the
 * usage-only chunk and the `"usage":null` members. `raw` sees every upstream chunk unchanged
 * (usage sniffing). Complete events pass as soon as their blank line arrives; only an
 * unfinished event is held, and one longer than {@linkcode MAX_EVENT_CHARS} is passed as it is.
 */
export function withoutUsageChunk(
  source: BodyReader,
  raw: (chunk: Uint8Array) => void,
): BodyReader {
  const textDecoder = new TextDecoder();
  let pending = "";
  return {
    async read() {
      for (;;) {
        const { done, value } = await source.read();
        if (done) {
          pending += textDecoder.decode();
          if (pending === "") return { done: true, value: undefined };
          const rest = encoder.encode(pending);
          pending = "";
          return { done: false, value: rest };
        }
        raw(value);
        pending += textDecoder.decode(value, { stream: true });
        let out = "";
        let start = 0;
        EVENT_END.lastIndex = 0;
        for (let match; (match = EVENT_END.exec(pending)) !== null;) {
          const end = match.index + match[0].length;
          out += filterEvent(pending.slice(start, end));
          start = end;
        }
        pending = pending.slice(start);
        if (pending.length > MAX_EVENT_CHARS) {
          out += pending;
          pending = "";
        }
        if (out !== "") return { done: false, value: encoder.encode(out) };
      }
    },
    cancel: (reason) => source.cancel(reason),
  };
}

/** One whole event (with its blank line): "" when it is the usage-only chunk. */
function filterEvent(event: string): string {
  if (!event.includes('"usage"')) return event;
  const data = event.split(/\r\n|\n|\r/)
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(line[5] === " " ? 6 : 5))
    .join("\n");
  try {
    const chunk: unknown = JSON.parse(data);
    if (
      isObject(chunk) && Array.isArray(chunk.choices) && chunk.choices.length === 0 &&
      isObject(chunk.usage)
    ) return "";
  } catch { /* not JSON: passed on as it is */ }
  return event.replace(USAGE_NULL, "");
}
