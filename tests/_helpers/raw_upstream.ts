/**
 * An upstream that records each request head as the bytes that arrived, for tests where the
 * exact bytes of the request line matter (a `Deno.serve` mock sees them decoded, or refuses
 * a target that is not UTF-8 before any handler runs). Every request gets `200 {"ok":true}`
 * and the connection is closed.
 *
 * @module
 */

const ANSWER = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n" +
    "connection: close\r\n\r\n" + '{"ok":true}',
);

/** A running raw upstream. */
export interface RawUpstream {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The request line of every request received, as bytes (without CRLF). */
  readonly requestLines: Uint8Array[];
  /** The request lines decoded one byte per character (Latin-1), for readable assertions. */
  lines(): string[];
  close(): Promise<void>;
}

/** Starts a raw upstream on a free port. */
export function startRawUpstream(): RawUpstream {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requestLines: Uint8Array[] = [];
  const connections = new Set<Deno.Conn>();
  const handlers: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      connections.add(conn);
      handlers.push(handle(conn).finally(() => connections.delete(conn)));
    }
  })();

  async function handle(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    let length = 0;
    try {
      for (;;) {
        const n = await conn.read(buffer.subarray(length));
        if (n === null) return;
        length += n;
        const head = buffer.subarray(0, length);
        const end = indexOfCrlfCrlf(head);
        if (end < 0) continue;
        const lineEnd = head.indexOf(13);
        requestLines.push(head.slice(0, lineEnd));
        await conn.write(ANSWER);
        return;
      }
    } catch {
      // The proxy went away: nothing to record.
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    requestLines,
    lines: () => requestLines.map((line) => String.fromCharCode(...line)),
    async close() {
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting.catch(() => {});
      await Promise.all(handlers);
    },
  };
}

function indexOfCrlfCrlf(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}
