/**
 * How a group talks to its upstreams. Two transports behind one small interface:
 *
 * - `http1`: the project's own HTTP/1.1 client (`./http1/`), for direct traffic, plain HTTP
 *   (vLLM, Ollama, internal services) and HTTPS over TLS connections of its own; an upstream
 *   that speaks only HTTP/2 is handed to `fetch`. It never decodes bodies, so compressed answers
 *   pass through byte-exact.
 * - `fetch`: `fetch` with a `Deno.createHttpClient`, for traffic through an outbound proxy
 *   (HTTP, HTTPS CONNECT, SOCKS5, with credentials) — configured, or from `HTTP_PROXY`/
 *   `HTTPS_PROXY` in the environment, which only Deno's client honours.
 *
 * Both return a Response-shaped reply whose body is a web `ReadableStream`, so everything
 * downstream (observing, deadlines, error events) is the same for either.
 *
 * @module
 */
import { tlsFailure, type TlsFailureKind } from "./failure.ts";

/**
 * An upstream's TLS certificate was not accepted (unknown issuer, wrong name, expired), or the
 * TLS handshake failed otherwise. Not a connect error: trying the same upstream again cannot
 * help, so it is never retried there.
 */
export class UpstreamTlsError extends Error {
  override name = "UpstreamTlsError";
  /** What it was about, from a fixed vocabulary: safe to show a client. */
  readonly kind: TlsFailureKind;
  /** Deno's reason without the URL, for the log (it may name the upstream's address). */
  readonly detail: string;
  constructor(cause: unknown) {
    const { kind, detail } = tlsFailure(cause);
    super(`TLS handshake failed: ${detail}`, { cause });
    this.kind = kind;
    this.detail = detail;
  }
}

/**
 * Whose fault a request is that never left the proxy: the client's (it asked for something
 * no transport can send) or the proxy's own. Never the upstream's: nothing reached it.
 */
export type NotSentFault = "client" | "proxy";

/**
 * A transport refused a request before writing any byte of it (a method or head it cannot
 * encode). It must not count against the upstream: no breaker failure, no retry.
 */
export class NotSentError extends Error {
  override name = "NotSentError";
  readonly fault: NotSentFault;
  constructor(fault: NotSentFault, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.fault = fault;
  }
}

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
  /** The body as a stream. Use one of `body`, `reader()` and `bytes()`, once. */
  readonly body: ReadableStream<Uint8Array> | null;
  /** The body as a pull reader: for the proxy's own stream, one stream layer less. */
  reader(): BodyReader | null;
  /** The whole body at once (rejects if it breaks or the request is aborted). */
  bytes(): Promise<Uint8Array<ArrayBuffer>>;
}

/** What `ReadableStream.getReader()` returns, as far as a body's consumer needs it. */
export interface BodyReader {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
}

/** Read access to an upstream response's headers (a `Headers`, or the HTTP/1.1 client's `RawHeaders`). */
export interface ReplyHeaders {
  get(name: string): string | null;
  has(name: string): boolean;
  forEach(callback: (value: string, name: string) => void): void;
}

/** The transports' names, as the start-up log shows them. */
export type TransportKind = "http1" | "fetch";

/** A group's way to send requests upstream. */
export interface Transport {
  readonly kind: TransportKind;
  /** The transport that really carries requests to targets of `protocol` (https may differ). */
  kindFor(protocol: UpstreamTarget["protocol"]): TransportKind;
  /** Resolves with the response head; rejects on connection errors or abort. */
  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply>;
  /** Releases pooled connections. */
  close(): void;
}
