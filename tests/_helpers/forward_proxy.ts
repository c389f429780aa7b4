/**
 * A small HTTP forward proxy for the outbound-proxy tests, so they run wherever Deno runs (no
 * Debian `tinyproxy` needed). It does what a real proxy does for the proxy's outbound client:
 *
 * - absolute-form requests (`GET http://host:port/path HTTP/1.1`) are relayed in origin-form
 *   with `Via` added both ways and the proxy's own headers removed;
 * - `CONNECT host:port` opens a byte tunnel;
 * - with credentials configured, a missing or wrong Basic `Proxy-Authorization` is answered
 *   407 with `Proxy-Authenticate` (RFC 9110 §11.7), as proxies should (tinyproxy answers 401).
 *
 * One request per client connection (answers carry `Connection: close`): framing is then the
 * upstream's own, so bodies pass byte for byte without being parsed. Only loopback targets are
 * served. Bounded: heads up to {@linkcode MAX_HEAD_BYTES}, at most
 * {@linkcode MAX_CONNECTIONS} client connections; `stop()` closes every socket and waits for
 * every task, so Deno's test sanitizers see nothing left.
 *
 * @module
 */
import { concatBytes } from "../../src/bytes.ts";

/** Largest request or response head accepted, bytes. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Client connections served at once; more are closed on accept. */
const MAX_CONNECTIONS = 64;
/** What this proxy adds as `Via` (RFC 9110 §7.6.3): a pseudonym the tests can match. */
export const FORWARD_PROXY_VIA = "1.1 llmproxy-test-forward-proxy";

const encoder = new TextEncoder();
const CRLF2 = encoder.encode("\r\n\r\n");
/** Headers for this hop only: never forwarded (RFC 9110 §7.6.1), plus the proxy's own. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
]);

/** Options of {@linkcode startForwardProxy}. */
export interface ForwardProxyOptions {
  /** Credentials the client must send as Basic `Proxy-Authorization`; none: open proxy. */
  readonly basicAuth?: { readonly user: string; readonly password: string };
}

/** What the proxy did, for tests to assert that traffic really went through it. */
export interface ForwardProxyCounts {
  /** Absolute-form requests relayed to their origin. */
  relayed: number;
  /** CONNECT tunnels opened. */
  tunnels: number;
  /** Requests answered 407 (credentials missing or wrong). */
  rejected: number;
}

/** A running forward proxy. */
export interface ForwardProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly counts: Readonly<ForwardProxyCounts>;
  /** Closes the listener and every connection, and waits for all of them to end. */
  stop(): Promise<void>;
}

/** Starts a forward proxy on 127.0.0.1, on a free port. */
export function startForwardProxy(options: ForwardProxyOptions = {}): ForwardProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const counts: ForwardProxyCounts = { relayed: 0, tunnels: 0, rejected: 0 };
  const sockets = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const expected = options.basicAuth
    ? `Basic ${btoa(`${options.basicAuth.user}:${options.basicAuth.password}`)}`
    : undefined;

  const track = (conn: Deno.Conn) => sockets.add(conn);
  const serve = async (client: Deno.Conn) => {
    const opened: Deno.Conn[] = [client];
    try {
      await handle(client, {
        expected,
        counts,
        connect: async (hostname, port) => {
          const conn = await Deno.connect({ hostname, port });
          opened.push(conn);
          track(conn);
          return conn;
        },
      });
    } catch {
      // A client or origin that went away: nothing to answer.
    } finally {
      for (const conn of opened) closeQuietly(conn, sockets);
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        if (sockets.size >= MAX_CONNECTIONS) {
          conn.close();
          continue;
        }
        track(conn);
        const task = serve(conn);
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    counts,
    async stop() {
      try {
        listener.close();
      } catch { /* already closed */ }
      await accepting;
      for (const conn of sockets) closeQuietly(conn, sockets);
      await Promise.all(tasks);
    },
  };
}

interface HandleEnv {
  readonly expected: string | undefined;
  readonly counts: ForwardProxyCounts;
  readonly connect: (hostname: string, port: number) => Promise<Deno.Conn>;
}

/** Serves one request (or one tunnel) on a client connection. */
async function handle(client: Deno.Conn, env: HandleEnv): Promise<void> {
  const request = await readHead(client);
  if (!request) return;
  const [requestLine, ...lines] = request.head.split("\r\n");
  const [method, target, version] = requestLine!.split(" ");
  if (!method || !target || (version !== "HTTP/1.1" && version !== "HTTP/1.0")) {
    return await answer(client, "400 Bad Request");
  }
  const fields = lines.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
  });
  if (env.expected !== undefined) {
    const given = fields.find(([name]) => name === "proxy-authorization")?.[1];
    if (given !== env.expected) {
      env.counts.rejected++;
      return await answer(
        client,
        "407 Proxy Authentication Required",
        'proxy-authenticate: Basic realm="forward-proxy"\r\n',
      );
    }
  }
  if (method === "CONNECT") {
    const authority = /^(127\.0\.0\.1|localhost):(\d{1,5})$/.exec(target);
    if (!authority) return await answer(client, "403 Forbidden");
    const origin = await env.connect("127.0.0.1", Number(authority[2]));
    env.counts.tunnels++;
    await writeAll(client, encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
    await writeAll(origin, request.rest);
    await Promise.all([pipe(client, origin), pipe(origin, client)]);
    return;
  }
  const url = URL.parse(target);
  if (!url || url.protocol !== "http:" || !["127.0.0.1", "localhost"].includes(url.hostname)) {
    return await answer(client, "403 Forbidden");
  }
  const origin = await env.connect("127.0.0.1", Number(url.port || 80));
  env.counts.relayed++;
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\n`;
  for (const [name, value] of fields) {
    if (!HOP_BY_HOP.has(name)) head += `${name}: ${value}\r\n`;
  }
  head += `via: ${FORWARD_PROXY_VIA}\r\nconnection: close\r\n\r\n`;
  await writeAll(origin, concatBytes([encoder.encode(head), request.rest]));
  // The request body (if any) follows as it comes; the origin closes after its answer.
  const upload = pipe(client, origin);
  const response = await readHead(origin);
  if (!response) {
    await answer(client, "502 Bad Gateway");
  } else {
    const [statusLine, ...responseLines] = response.head.split("\r\n");
    let out = `${statusLine}\r\n`;
    for (const line of responseLines) {
      const name = line.slice(0, line.indexOf(":")).trim().toLowerCase();
      if (!HOP_BY_HOP.has(name)) out += `${line}\r\n`;
    }
    out += `via: ${FORWARD_PROXY_VIA}\r\nconnection: close\r\n\r\n`;
    await writeAll(client, concatBytes([encoder.encode(out), response.rest]));
    await pipe(origin, client);
  }
  // The answer is complete: stop the upload side too.
  closeQuietly(client);
  await upload;
}

/** Reads a head (bounded); null when the peer closed first or sent too much. */
async function readHead(
  conn: Deno.Conn,
): Promise<{ head: string; rest: Uint8Array } | null> {
  let bytes: Uint8Array = new Uint8Array(0);
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const end = indexOf(bytes, CRLF2);
    if (end >= 0) {
      return { head: latin1(bytes.subarray(0, end)), rest: bytes.slice(end + 4) };
    }
    if (bytes.length > MAX_HEAD_BYTES) return null;
    const n = await conn.read(buffer);
    if (n === null) return null;
    bytes = concatBytes([bytes, buffer.subarray(0, n)]);
  }
}

/** Copies `from` to `to` until `from` ends or either fails, then half-closes `to`. */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
      await writeAll(to, buffer.subarray(0, n));
    }
    await to.closeWrite();
  } catch {
    // One side closed: the other is closed by the caller.
  }
}

/**
 * A head-only answer, then a graceful close: the rest of the request is read and dropped until
 * the client closes (as `Connection: close` asks), so that unread request bytes never turn the
 * close into a reset that could destroy the answer before the client reads it.
 */
async function answer(client: Deno.Conn, status: string, extra = ""): Promise<void> {
  await writeAll(
    client,
    encoder.encode(
      `HTTP/1.1 ${status}\r\n${extra}via: ${FORWARD_PROXY_VIA}\r\n` +
        "content-length: 0\r\nconnection: close\r\n\r\n",
    ),
  );
  await client.closeWrite();
  const sink = new Uint8Array(16 * 1024);
  while (await client.read(sink) !== null) { /* dropped */ }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    offset += await conn.write(bytes.subarray(offset));
  }
}

function closeQuietly(conn: Deno.Conn, from?: Set<Deno.Conn>): void {
  from?.delete(conn);
  try {
    conn.close();
  } catch { /* already closed */ }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}
