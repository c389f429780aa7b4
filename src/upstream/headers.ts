/**
 * Header handling on both legs: hop-by-hop stripping, forwarding headers, credentials and the
 * configured header operations. Everything that can be decided at load (auth value, op list)
 * is prepared once in {@linkcode RequestHeaderPlan}.
 *
 * @module
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones a proxy must not pass on. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
] as const;

/** Deletes hop-by-hop headers, including those named by `Connection`. */
export function stripHopByHop(headers: Headers): void {
  const connection = headers.get("connection");
  if (connection) {
    for (const name of connection.split(",")) {
      const trimmed = name.trim();
      if (trimmed) headers.delete(trimmed);
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
}

/** A configured header operation. */
export interface HeaderOp {
  readonly op: "insert" | "replace" | "remove";
  readonly key: string;
  readonly value?: string | undefined;
}

/** Upstream credentials as configured. */
export type AuthConfig =
  | { readonly type: "none" }
  | { readonly type: "bearer"; readonly token: string }
  | { readonly type: "basic"; readonly username: string; readonly password: string };

/** Per-request facts the outgoing headers depend on. */
export interface ForwardingFacts {
  /** The socket peer's address (appended to X-Forwarded-For). */
  readonly peerIp: string;
  /** "http" or "https": how the client reached the proxy. */
  readonly proto: string;
}

/** The outgoing-request header recipe of one upstream in one group, prepared at load. */
export class RequestHeaderPlan {
  readonly #authorization: string | undefined;
  readonly #userAgent: string;
  readonly #ops: readonly HeaderOp[];

  constructor(options: { auth: AuthConfig; userAgent: string; ops: readonly HeaderOp[] }) {
    const { auth } = options;
    this.#authorization = auth.type === "bearer"
      ? `Bearer ${auth.token}`
      : auth.type === "basic"
      ? `Basic ${encodeBasic(auth.username, auth.password)}`
      : undefined;
    this.#userAgent = options.userAgent;
    this.#ops = options.ops;
  }

  /** Builds the upstream request's headers from the client's. */
  build(clientHeaders: Headers, facts: ForwardingFacts): Headers {
    const headers = new Headers(clientHeaders);
    stripHopByHop(headers);
    const host = headers.get("host");
    // Host comes from the upstream URL (fetch sets it); the length is recomputed by fetch.
    headers.delete("host");
    headers.delete("content-length");
    // Deno's fetch (2.9) decodes gzip/br whenever the request's Accept-Encoding allows it, even
    // an explicit one, yet keeps Content-Encoding on the response: passing the client's
    // preference on would send decoded bytes labelled as compressed. Asking for identity keeps
    // fetch from decoding, so whatever the upstream sends passes through byte-exact.
    headers.set("accept-encoding", "identity");

    if (this.#authorization !== undefined) headers.set("authorization", this.#authorization);

    const forwardedFor = headers.get("x-forwarded-for");
    headers.set(
      "x-forwarded-for",
      forwardedFor ? `${forwardedFor}, ${facts.peerIp}` : facts.peerIp,
    );
    headers.set("x-forwarded-proto", facts.proto);
    if (host) headers.set("x-forwarded-host", host);
    headers.set("user-agent", this.#userAgent);
    headers.set("traceparent", nextTraceparent(headers.get("traceparent")));

    for (const op of this.#ops) {
      if (op.op === "remove") headers.delete(op.key);
      else if (op.op === "replace") headers.set(op.key, op.value ?? "");
      else if (!headers.has(op.key)) headers.set(op.key, op.value ?? "");
    }
    return headers;
  }
}

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;

/**
 * W3C trace context for the upstream call: the client's trace id continues with a new parent
 * (span) id, so upstream logs join the client's trace; a trace is started when none (or a
 * malformed one) came in.
 */
export function nextTraceparent(incoming: string | null): string {
  const match = incoming ? TRACEPARENT_RE.exec(incoming.trim()) : null;
  const traceId = match && !/^0+$/.test(match[1]!) ? match[1]! : randomHex(32);
  return `00-${traceId}-${randomHex(16)}-${match ? match[2] : "01"}`;
}

/** Random lowercase hex of `length` characters, from the fast native UUID source. */
function randomHex(length: number): string {
  let hex = "";
  while (hex.length < length) {
    // The 30 random digits of a v4 UUID: its version and variant digits are fixed.
    const uuid = crypto.randomUUID();
    hex += uuid.slice(0, 8) + uuid.slice(9, 13) + uuid.slice(15, 18) + uuid.slice(20, 23) +
      uuid.slice(24);
  }
  return hex.slice(0, length);
}

function encodeBasic(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  return btoa(String.fromCharCode(...bytes));
}

/**
 * The client response's headers from the upstream's, hop-by-hop stripped. Content-Encoding
 * and Content-Length stay valid: the request always asks for identity, so
 * fetch hands over the body exactly as the upstream encoded it.
 */
export function responseHeaders(upstream: Headers): Headers {
  const headers = new Headers(upstream);
  stripHopByHop(headers);
  return headers;
}
