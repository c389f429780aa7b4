/**
 * Shared helpers of the e2e suite: raw HTTP/1.1 over TCP (for headers `fetch` cannot send or
 * hides), SSE reading with arrival times, polling, free ports.
 *
 * @module
 */
import assert from "node:assert/strict";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response read off the wire: status line, raw header lines, body bytes as text. */
export interface RawResponse {
  readonly status: number;
  /** Header lines as sent, lower-cased names, in order. */
  readonly headers: readonly [string, string][];
  readonly raw: string;
  /** The value of the first header named `name`, or undefined. */
  get(name: string): string | undefined;
}

/**
 * Sends `head` (request line and header lines, without the blank line) and `body` over a
 * fresh TCP connection and reads until the server closes it (send `Connection: close`).
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
  const chunks: Uint8Array[] = [];
  try {
    const text = head.replace(/\r?\n/g, "\r\n").replace(/(\r\n)*$/, "") + "\r\n\r\n" + body;
    await conn.write(encoder.encode(text));
    const buffer = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
      // Stop at the end of the headers plus a complete fixed-length or chunked body.
      if (complete(decoder.decode(concat(chunks)))) break;
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  const raw = decoder.decode(concat(chunks));
  const headEnd = raw.indexOf("\r\n\r\n");
  assert.ok(headEnd > 0, `no complete response head received: ${JSON.stringify(raw)}`);
  const lines = raw.slice(0, headEnd).split("\r\n");
  const status = Number(lines[0]!.split(" ")[1]);
  const headers = lines.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  return {
    status,
    headers,
    raw,
    get: (name) => headers.find(([n]) => n === name.toLowerCase())?.[1],
  };
}

function complete(raw: string): boolean {
  const headEnd = raw.indexOf("\r\n\r\n");
  if (headEnd < 0) return false;
  const head = raw.slice(0, headEnd).toLowerCase();
  const body = raw.slice(headEnd + 4);
  const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (length) return encoder.encode(body).byteLength >= Number(length[1]);
  if (/\r\ntransfer-encoding:\s*chunked/.test(head)) return /(^|\r\n)0\r\n\r\n$/.test(body);
  return false;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const size = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** One SSE event as received, with the time (ms since `start`) its chunk arrived. */
export interface TimedEvent {
  readonly at: number;
  /** The event's text without the trailing blank line. */
  readonly text: string;
}

/**
 * Reads an SSE body to its end (or until `stopAfter` events), recording each event's arrival
 * time relative to `start`. Cancels the body when stopping early.
 */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  start: number,
  stopAfter = Infinity,
): Promise<TimedEvent[]> {
  const events: TimedEvent[] = [];
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (events.length < stopAfter) {
      const { done, value } = await reader.read();
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

/** A TCP port that was free a moment ago (listen on 0, close). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
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
