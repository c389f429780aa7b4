/**
 * Header handling on both legs: hop-by-hop stripping, forwarding headers, credentials and the
 * configured header operations. Everything that can be decided at load (auth value, op list)
 * is prepared once in {@linkcode RequestHeaderPlan}.
 *
 * @module
 */
import { base64Utf8 } from "../bytes.ts";
import type { ReplyHeaders } from "../transport/transport.ts";
import { cryptoIds, type IdSource } from "../deps.ts";

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

/**
 * The client's request headers as the outgoing ones are built from them: a `Headers`, or a view
 * of one without some names (the client key's, see `pipeline/client_key.ts`).
 */
export interface ClientHeaders {
  get(name: string): string | null;
  forEach(callback: (value: string, name: string) => void): void;
}

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
  readonly #ids: IdSource;

  constructor(
    options: { auth: AuthConfig; userAgent: string; ops: readonly HeaderOp[]; ids?: IdSource },
  ) {
    const { auth } = options;
    this.#authorization = auth.type === "bearer"
      ? `Bearer ${auth.token}`
      : auth.type === "basic"
      ? `Basic ${encodeBasic(auth.username, auth.password)}`
      : undefined;
    this.#userAgent = options.userAgent;
    this.#ids = options.ids ?? cryptoIds;
    // Names compared lower-case, as `build()` keeps them.
    this.#ops = options.ops.map((op) => ({ ...op, key: op.key.toLowerCase() }));
  }

  /**
   * Builds the upstream request's headers from the client's, as a plain record with
   * lower-case names: one pass over the client's headers instead of a copied `Headers` edited
   * twenty times (each edit is a linear search with validation), on every request.
   */
  build(clientHeaders: ClientHeaders, facts: ForwardingFacts): Record<string, string> {
    const out: Record<string, string> = Object.create(null);
    let connection: string | undefined;
    // forEach, not for-of: Deno's Headers iterator costs about three times as much per request.
    clientHeaders.forEach((value, name) => {
      if (SKIPPED_REQUEST_HEADERS.has(name)) {
        if (name === "connection") connection = value;
        return;
      }
      out[name] = value;
    });
    if (connection) { for (const token of connectionTokens(connection)) delete out[token]; }
    const host = clientHeaders.get("host");
    // Deno's fetch (2.9) decodes gzip/br whenever the request's Accept-Encoding allows it, even
    // an explicit one, yet keeps Content-Encoding on the response: passing the client's
    // preference on would send decoded bytes labelled as compressed. Asking for identity keeps
    // fetch from decoding, so whatever the upstream sends passes through byte-exact.
    out["accept-encoding"] = "identity";
    if (this.#authorization !== undefined) out["authorization"] = this.#authorization;
    const forwardedFor = out["x-forwarded-for"];
    out["x-forwarded-for"] = forwardedFor ? `${forwardedFor}, ${facts.peerIp}` : facts.peerIp;
    out["x-forwarded-proto"] = facts.proto;
    if (host) out["x-forwarded-host"] = host;
    out["user-agent"] = this.#userAgent;
    out["traceparent"] = nextTraceparent(out["traceparent"] ?? null, this.#ids);

    for (const op of this.#ops) {
      if (op.op === "remove") delete out[op.key];
      else if (op.op === "replace") out[op.key] = op.value ?? "";
      else if (!(op.key in out)) out[op.key] = op.value ?? "";
    }
    return out;
  }
}

/**
 * Request headers never copied upstream: hop-by-hop ones, Host (the upstream URL's authority
 * is used), Content-Length (recomputed for the replayed body) and Expect (the body has already
 * been read, so `100-continue` would only make the upstream wait).
 */
const SKIPPED_REQUEST_HEADERS = new Set<string>([
  ...HOP_BY_HOP,
  "host",
  "content-length",
  "expect",
]);

function connectionTokens(value: string): string[] {
  return value.split(",").map((token) => token.trim().toLowerCase()).filter((t) => t !== "");
}

// Version 00 is exactly this; later versions may append fields after the flags (W3C §3.2.4).
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZEROS_RE = /^0+$/;

/**
 * W3C trace context for the upstream call: the client's trace id continues with a new parent
 * (span) id, so upstream logs join the client's trace; a trace is started when none (or a
 * malformed one) came in.
 */
export function nextTraceparent(incoming: string | null, ids: IdSource = cryptoIds): string {
  const match = incoming ? TRACEPARENT_RE.exec(incoming.trim()) : null;
  const valid = match !== null && match[1] !== "ff" && (match[1] !== "00" || !match[5]) &&
    !ZEROS_RE.test(match[2]!) && !ZEROS_RE.test(match[3]!);
  const traceId = valid ? match[2]! : ids.traceId();
  return `00-${traceId}-${ids.spanId()}-${valid ? match[4] : "01"}`;
}

function encodeBasic(username: string, password: string): string {
  return base64Utf8(`${username}:${password}`);
}

/**
 * The client response's headers from the upstream's: hop-by-hop ones (and those `Connection`
 * names) left out, then `extra` (the proxy's own, e.g. `X-Request-Id`) set over them. Returned
 * as pairs for the `Response` constructor, which builds its `Headers` once. An upstream
 * `X-Request-Id` is kept as `X-Upstream-Request-Id`, so provider support can still trace it.
 */
export function responseHeaders(
  upstream: ReplyHeaders,
  extra: readonly (readonly [string, string])[] = [],
): [string, string][] {
  const connection = upstream.get("connection");
  const named = connection ? new Set(connectionTokens(connection)) : undefined;
  const overridden = extra.length > 0 ? new Set(extra.map(([name]) => name)) : undefined;
  const pairs: [string, string][] = [];
  upstream.forEach((value, name) => {
    if (HOP_BY_HOP_SET.has(name) || named?.has(name)) return;
    if (overridden?.has(name)) {
      if (name === "x-request-id") pairs.push(["x-upstream-request-id", value]);
      return;
    }
    pairs.push([name, value]);
  });
  for (const [name, value] of extra) pairs.push([name, value]);
  return pairs;
}

const HOP_BY_HOP_SET = new Set<string>(HOP_BY_HOP);
