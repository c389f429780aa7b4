/**
 * Shared helpers of the e2e suite: raw HTTP/1.1 over TCP (for headers `fetch` cannot send or
 * hides), SSE reading with arrival times, polling, free ports.
 *
 * @module
 */
import assert from "node:assert/strict";
import { concatBytes } from "../../src/bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response read off the wire: status line, raw header lines, body bytes. */
export interface RawResponse {
  readonly status: number;
  /** Header lines as sent, lower-cased names, in order. */
  readonly headers: readonly [string, string][];
  /** The whole response as text (binary bodies come out mangled: use `body`). */
  readonly raw: string;
  /** The body bytes, de-chunked. */
  readonly body: Uint8Array<ArrayBuffer>;
  /** The value of the first header named `name`, or undefined. */
  get(name: string): string | undefined;
}

/**
 * Sends `head` (request line and header lines, without the blank line) and `body` over a
 * fresh TCP connection and reads one response (send `Connection: close`).
 */
export async function rawRequest(
  port: number,
  head: string,
  body = "",
  timeoutMs = 3000,
): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* already closed */ }
  }, timeoutMs);
  let bytes = new Uint8Array(0);
  let parsed: RawResponse | undefined;
  try {
    const text = head.replace(/\r?\n/g, "\r\n").replace(/(\r\n)*$/, "") + "\r\n\r\n" + body;
    await conn.write(encoder.encode(text));
    const buffer = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) {
        parsed = parse(bytes, true);
        break;
      }
      bytes = concatBytes([bytes, buffer.subarray(0, n)]);
      parsed = parse(bytes);
      if (parsed) break;
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  assert.ok(parsed, `no complete response received: ${JSON.stringify(decoder.decode(bytes))}`);
  return parsed;
}

/**
 * Parses a complete response (fixed-length or chunked body), or undefined if incomplete;
 * at `eof` a body without framing is whatever arrived.
 */
function parse(bytes: Uint8Array, eof = false): RawResponse | undefined {
  const headEnd = indexOf(bytes, CRLF2, 0);
  if (headEnd < 0) return undefined;
  const lines = decoder.decode(bytes.subarray(0, headEnd)).split("\r\n");
  const status = Number(lines[0]!.split(" ")[1]);
  const headers = lines.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  const get = (name: string) => headers.find(([n]) => n === name.toLowerCase())?.[1];
  const rest = bytes.subarray(headEnd + 4);
  let body: Uint8Array<ArrayBuffer>;
  const length = get("content-length");
  if (length !== undefined) {
    if (rest.byteLength < Number(length)) return undefined;
    body = rest.slice(0, Number(length));
  } else if (get("transfer-encoding")?.toLowerCase() === "chunked") {
    const parts: Uint8Array[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = indexOf(rest, CRLF, at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(decoder.decode(rest.subarray(at, lineEnd)), 16);
      if (size === 0) {
        if (indexOf(rest, CRLF2, lineEnd) < 0 && indexOf(rest, CRLF, lineEnd + 2) < 0) {
          return undefined;
        }
        break;
      }
      if (rest.byteLength < lineEnd + 2 + size + 2) return undefined;
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
    body = concatBytes(parts);
  } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    body = new Uint8Array(0);
  } else if (eof) body = rest.slice();
  else return undefined;
  return { status, headers, raw: decoder.decode(bytes), body, get };
}

const CRLF = new Uint8Array([13, 10]);
const CRLF2 = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= haystack.byteLength - needle.byteLength; i++) {
    for (let j = 0; j < needle.byteLength; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** One SSE event as received, with the time (ms since `start`) its chunk arrived. */
export interface TimedEvent {
  readonly at: number;
  /** The event's text without the trailing blank line. */
  readonly text: string;
}

/**
 * Reads an SSE body to its end (or until `stopAfter` events), recording each event's arrival
 * time relative to `start`. Cancels the body when stopping early; fails (after cancelling)
 * when the body has not ended within `timeoutMs`, so a stream that never ends cannot hang
 * the suite.
 */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  start: number,
  stopAfter = Infinity,
  timeoutMs = 5000,
): Promise<TimedEvent[]> {
  const events: TimedEvent[] = [];
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the stream did not end within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  let buffer = "";
  try {
    while (events.length < stopAfter) {
      const { done, value } = await Promise.race([reader.read(), timedOut]);
      if (done) break;
      const at = performance.now() - start;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        events.push({ at, text: buffer.slice(0, end) });
        buffer = buffer.slice(end + 2);
      }
    }
    if (buffer.trim()) events.push({ at: performance.now() - start, text: buffer });
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  return events;
}

/** Data events carrying a completion chunk (not `[DONE]`, not an error event). */
export function contentEvents(events: readonly TimedEvent[]): TimedEvent[] {
  return events.filter((e) => e.text.startsWith("data: {") && e.text.includes("chat.completion"));
}

/** Polls `check` every 20 ms until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(
  check: () => boolean,
  what: string,
  timeoutMs = 1000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(20);
  }
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A TCP port that was free a moment ago, chosen below Linux's ephemeral range (32768–60999):
 * a port the kernel handed out for `port: 0` and took back could be handed out again to a
 * listener the test starts later (the proxy's own), and a "dead" upstream would then answer.
 */
export function freePort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
}

/** Waits until something accepts TCP connections on `port`. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      if (performance.now() > deadline) assert.fail(`nothing listens on port ${port}`);
      await delay(50);
    }
  }
}

/** Asserts an OpenAI-style error body `{"error": {"message", "type", "code"}}`; returns it. */
export async function assertErrorBody(
  response: Response,
  status: number,
  code?: string,
): Promise<{ message: string; type: string; code: string }> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  const body = JSON.parse(text);
  assert.equal(typeof body.error?.message, "string", text);
  assert.equal(typeof body.error?.type, "string", text);
  assert.equal(typeof body.error?.code, "string", text);
  if (code !== undefined) assert.equal(body.error.code, code, text);
  return body.error;
}

/** A chat completion request body. */
export function chat(stream = false): string {
  return JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], stream });
}
