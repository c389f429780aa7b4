/**
 * Usage for every OpenAI chat stream. A streamed chat request that did not ask for usage
 * (`stream_options.include_usage`) is sent asking for it, so its tokens can be charged; the
 * answer's usage-only chunk — and the `"usage":null` the other chunks then carry — is removed
 * from what the client receives, so it sees what it would have seen without the proxy.
 *
 * @module
 */
import type { BodyReader } from "../transport/transport.ts";
import { MAX_EVENT_CHARS } from "./usage.ts";
import { ABSENT, type RequestBody, UNREADABLE } from "../pipeline/json_body.ts";

const encoder = new TextEncoder();

/**
 * The body to send for a streamed chat request on `path` that did not ask for usage, with
 * `include_usage` added; undefined when nothing needs changing (not a chat stream, usage
 * already asked for, not a JSON object). Only `stream_options` differs from the client's
 * bytes. Members are read as the upstream reads them, whatever the rest of the body holds: an
 * escaped key (`"str\u0065am"`) or a value that `JSON.parse` refuses elsewhere in the body
 * (`NaN`, which Python's reader accepts) does not make a stream go uncounted.
 */
export function requestWithUsage(
  path: string,
  body: RequestBody,
): Uint8Array<ArrayBuffer> | undefined {
  if (!body.present || !path.endsWith("/chat/completions")) return undefined;
  if (body.member("stream") !== true) return undefined;
  const options = body.member("stream_options");
  if (options === ABSENT || options === UNREADABLE) {
    // Options the proxy cannot read are options it cannot keep: usage is what it must have.
    return body.withMember("stream_options", INCLUDE_USAGE) ?? undefined;
  }
  if (options !== null && !isObject(options)) return undefined; // invalid: the upstream says so
  if (options?.include_usage === true) return undefined;
  return body.withMember("stream_options", JSON.stringify({ ...options, include_usage: true })) ??
    undefined;
}

const INCLUDE_USAGE = '{"include_usage":true}';

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
