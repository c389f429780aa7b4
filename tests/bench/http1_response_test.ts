import assert from "node:assert/strict";
import { ResponseReader } from "../../bench/http1_response.ts";

/** A connection that returns the given pieces, one per read, then EOF. */
function pieces(...parts: string[]): Pick<Deno.Conn, "read"> {
  const queue = parts.map((p) => new TextEncoder().encode(p));
  return {
    read(into: Uint8Array): Promise<number | null> {
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      if (next.length > into.length) {
        queue.unshift(next.subarray(into.length));
        into.set(next.subarray(0, into.length));
        return Promise.resolve(into.length);
      }
      into.set(next);
      return Promise.resolve(next.length);
    },
  };
}

Deno.test("ResponseReader.read() reads Content-Length responses back to back", async () => {
  const reader = new ResponseReader(pieces(
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 503 Service Unavailable\r\n",
    "content-length: 2\r\nConnection: close\r\n\r\nno",
  ));
  const first = await reader.read();
  assert.equal(first.status, 200);
  assert.equal(first.keepAlive, true);
  assert.deepEqual(first.eventsAt, []);
  const second = await reader.read();
  assert.equal(second.status, 503);
  assert.equal(second.keepAlive, false);
});

Deno.test("ResponseReader.read() times each SSE data event in a chunked body split anywhere", async () => {
  const events = 'data: {"a":1}\n\n: comment\n\nevent: x\ndata: 2\n\ndata: [DONE]\n\n';
  const chunked = `${events.length.toString(16)}\r\n${events}\r\n0\r\n\r\n`;
  const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
    "Transfer-Encoding: chunked\r\n\r\n";
  const wire = head + chunked + "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
  for (const size of [1, 3, 7, wire.length]) {
    const parts: string[] = [];
    for (let i = 0; i < wire.length; i += size) parts.push(wire.slice(i, i + size));
    const reader = new ResponseReader(pieces(...parts));
    const sse = await reader.read();
    // Three events with data; the comment is no event.
    assert.equal(sse.eventsAt.length, 3, `pieces of ${size} bytes`);
    assert.ok(sse.eventsAt.every((t) => t <= sse.endAt));
    assert.equal((await reader.read()).status, 204, `pieces of ${size} bytes`);
  }
});

Deno.test("ResponseReader.read() rejects a body cut short by EOF", async () => {
  const reader = new ResponseReader(pieces("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"));
  await assert.rejects(reader.read(), /closed before the response ended/);
});

Deno.test("ResponseReader.read() reads a body without length until EOF", async () => {
  const reader = new ResponseReader(pieces("HTTP/1.1 200 OK\r\n\r\nab", "cd"));
  const r = await reader.read();
  assert.equal(r.status, 200);
  assert.equal(r.keepAlive, false);
});
