/**
 * How a group talks to its upstreams. Two transports behind one small interface:
 *
 * - `node`: `node:http` with a keep-alive agent, for direct plain-HTTP traffic (vLLM, Ollama,
 *   internal services); `https:` targets go through `fetch`, see {@linkcode NodeTransport}. Measured here
 *   it streams SSE at about twice the rate of `fetch` (Deno's fetch body reader costs an op
 *   per chunk), and it never decodes bodies, so compressed answers pass through byte-exact.
 * - `fetch`: `fetch` with a `Deno.createHttpClient`, for traffic through an outbound proxy
 *   (HTTP, HTTPS CONNECT, SOCKS5, with credentials) — configured, or from `HTTP_PROXY`/
 *   `HTTPS_PROXY` in the environment, which only Deno's client honours.
 *
 * Both return a Response-shaped reply whose body is a web `ReadableStream`, so everything
 * downstream (observing, deadlines, error events) is the same for either.
 *
 * @module
 */
import http from "node:http";
import type { Buffer } from "node:buffer";
import type { ReplyHeaders } from "./headers.ts";

/** Where a request goes, split once so the transports need no URL parsing. */
export interface UpstreamTarget {
  /** The full URL (fetch). */
  readonly url: string;
  readonly protocol: "http:" | "https:";
  readonly hostname: string;
  readonly port: number;
  /** The authority for the Host header: host, and port when not the scheme's default. */
  readonly host: string;
  /** Path and query. */
  readonly path: string;
}

/** What one request sends. */
export interface SendInit {
  readonly method: string;
  /** Lower-case names; the transport adds Host and Content-Length. */
  readonly headers: Record<string, string>;
  readonly body: Uint8Array<ArrayBuffer> | null;
  /** Aborting it ends the request (before or during the response body). */
  readonly signal: AbortSignal;
}

/** The upstream's answer: status, headers, and the body as a stream. */
export interface UpstreamReply {
  readonly status: number;
  readonly statusText: string;
  readonly headers: ReplyHeaders;
  /** Whether there is a body (false for 204, 304, HEAD). Does not touch the body. */
  readonly hasBody: boolean;
  /** The body as a stream. Use either this or `bytes()`, not both. */
  readonly body: ReadableStream<Uint8Array> | null;
  /** The whole body at once (rejects if it breaks or the request is aborted). */
  bytes(): Promise<Uint8Array<ArrayBuffer>>;
}

/** A group's way to send requests upstream. */
export interface Transport {
  readonly kind: "node" | "fetch";
  /** Resolves with the response head; rejects on connection errors or abort. */
  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply>;
  /** Releases pooled connections. */
  close(): void;
}

/** `fetch` with a Deno HTTP client (proxies, env proxies). */
export class FetchTransport implements Transport {
  readonly kind = "fetch";
  readonly #client: Deno.HttpClient;
  readonly #fetch: typeof fetch;

  constructor(client: Deno.HttpClient, fetchImpl: typeof fetch = fetch) {
    this.#client = client;
    this.#fetch = fetchImpl;
  }

  async send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    const response = await this.#fetch(target.url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      signal: init.signal,
      client: this.#client,
      redirect: "manual",
    });
    return {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
      hasBody: response.body !== null,
      get body() {
        return response.body;
      },
      bytes: () => response.bytes(),
    };
  }

  close(): void {
    this.#client.close();
  }
}

/** Options of {@linkcode NodeTransport}. */
export interface NodeTransportOptions {
  /**
   * Where `https:` targets go. Deno's `node:https` needs `--allow-sys` to read the system CA
   * store; Deno's own client verifies TLS with no extra permission, so TLS goes through it.
   */
  secure: Transport;
  /** Keep connections for reuse. */
  keepAlive: boolean;
  /** Idle connections kept per host. */
  maxFreeSockets: number;
  /** Idle pooled connections close after this, ms. */
  idleTimeoutMs: number;
}

/**
 * Direct plain-HTTP traffic through a `node:http` keep-alive agent; `https:` targets are handed
 * to the `secure` transport.
 */
export class NodeTransport implements Transport {
  readonly kind = "node";
  readonly #http: http.Agent;
  readonly #secure: Transport;
  readonly #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(options: NodeTransportOptions) {
    const agentOptions = {
      keepAlive: options.keepAlive,
      maxFreeSockets: Math.max(1, options.maxFreeSockets),
      scheduling: "lifo" as const, // reuse the warmest connection; idle ones time out
    };
    this.#http = new http.Agent(agentOptions);
    this.#secure = options.secure;
    // The agent's own `timeout` arms a Node timer per request, which measured as the largest
    // single cost of the transport; one sweep over the idle sockets does the same job.
    if (options.keepAlive && options.idleTimeoutMs > 0) {
      const idleSince = new WeakMap<object, number>();
      this.#http.on("free", (socket: object) => idleSince.set(socket, Date.now()));
      const sweepMs = Math.max(100, Math.min(options.idleTimeoutMs / 2, 5_000));
      this.#sweeper = setInterval(() => {
        const cutoff = Date.now() - options.idleTimeoutMs;
        for (const sockets of Object.values(this.#http.freeSockets)) {
          for (const socket of sockets ?? []) {
            if ((idleSince.get(socket) ?? Infinity) <= cutoff) socket.destroy();
          }
        }
      }, sweepMs);
      Deno.unrefTimer(this.#sweeper);
    }
  }

  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    if (target.protocol === "https:") return this.#secure.send(target, init);
    const { signal } = init;
    if (signal.aborted) return Promise.reject(signal.reason);
    // Raw pairs skip Node's per-header setHeader() validation (measured: ~10 % of the
    // proxy's CPU per request); the names and values come from a validated Headers already.
    // With raw pairs Node adds no Host, so it is the first.
    const headers: string[] = ["host", target.host];
    for (const name in init.headers) headers.push(name, init.headers[name]!);
    if (init.body) headers.push("content-length", String(init.body.byteLength));

    return new Promise<UpstreamReply>((resolve, reject) => {
      const request = http.request({
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        path: target.path,
        method: init.method,
        headers,
        agent: this.#http,
      });
      let settled = false;
      const onAbort = () => request.destroy(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      request.on("error", (error) => {
        signal.removeEventListener("abort", onAbort);
        if (!settled) {
          settled = true;
          reject(signal.aborted ? signal.reason : error);
        }
      });
      request.on("response", (response) => {
        settled = true;
        const status = response.statusCode ?? 502;
        const done = () => signal.removeEventListener("abort", onAbort);
        let body: ReadableStream<Uint8Array> | undefined;
        resolve({
          status,
          statusText: response.statusMessage ?? "",
          headers: new RawHeaders(response.rawHeaders),
          hasBody: init.method !== "HEAD" && status !== 204 && status !== 304 && status >= 200,
          // Built on first use: `bytes()` reads the socket without any web stream.
          get body() {
            return body ??= bodyStream(response, signal, done);
          },
          bytes: () => readAll(response, signal, done),
        });
      });
      request.end(init.body ?? undefined);
    });
  }

  close(): void {
    clearInterval(this.#sweeper);
    this.#http.destroy();
    this.#secure.close();
  }
}

/** Collects a whole response body; rejects when it breaks or the request is aborted. */
function readAll(
  response: http.IncomingMessage,
  signal: AbortSignal,
  done: () => void,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.byteLength;
    });
    response.on("end", () => {
      done();
      const whole = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        whole.set(chunk, offset);
        offset += chunk.byteLength;
      }
      resolve(whole);
    });
    const fail = (error: unknown) => {
      done();
      reject(signal.aborted ? signal.reason : error);
    };
    response.on("error", fail);
    response.on("close", () => {
      if (!response.complete) fail(new Error("upstream closed the connection mid-body"));
    });
  });
}

/**
 * Response headers straight from Node's raw list, without building a `Headers` (which would
 * validate and re-sort every one): read once by the proxy, then copied into the client's
 * response.
 */
class RawHeaders implements ReplyHeaders {
  readonly #values = new Map<string, string[]>();

  constructor(raw: readonly string[]) {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const list = this.#values.get(name);
      if (list) list.push(raw[i + 1]!);
      else this.#values.set(name, [raw[i + 1]!]);
    }
  }

  get(name: string): string | null {
    return this.#values.get(name)?.join(", ") ?? null;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  forEach(callback: (value: string, name: string) => void): void {
    for (const [name, list] of this.#values) {
      // Set-Cookie values must stay separate; others combine as HTTP allows.
      if (name === "set-cookie") { for (const value of list) callback(value, name); }
      else callback(list.length === 1 ? list[0]! : list.join(", "), name);
    }
  }
}

/**
 * The response body as a web stream with backpressure: the socket is paused while the
 * client is not reading, so a slow client never makes the proxy buffer a fast upstream.
 * A connection that closes before the body is complete errors the stream.
 */
function bodyStream(
  response: http.IncomingMessage,
  signal: AbortSignal,
  done: () => void,
): ReadableStream<Uint8Array> {
  let finished = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const fail = (error: unknown) => {
        if (finished) return;
        finished = true;
        done();
        controller.error(signal.aborted ? signal.reason : error);
      };
      response.on("data", (chunk: Buffer) => {
        if (finished) return;
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 1) <= 0) response.pause();
      });
      response.on("end", () => {
        if (finished) return;
        finished = true;
        done();
        controller.close();
      });
      response.on("error", fail);
      response.on("close", () => {
        if (!response.complete) fail(new Error("upstream closed the connection mid-body"));
      });
    },
    pull() {
      response.resume();
    },
    cancel(reason) {
      finished = true;
      done();
      response.destroy(reason instanceof Error ? reason : undefined);
    },
  }, { highWaterMark: 1 });
}
