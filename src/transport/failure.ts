/**
 * What a client may be told about an upstream failure: a cause from a fixed vocabulary, never
 * the error's own text. Deno's errors name the request URL (with its configured query, e.g.
 * `?key=…`) and the address it went to, and a malformed answer quotes the upstream's bytes;
 * all of that stays in the (redacted) log, see {@linkcode failureDetail}.
 *
 * @module
 */

/** The causes a client can be told, most specific first (matched against the whole chain). */
const CAUSES: readonly (readonly [RegExp, string])[] = [
  [/too many open files|os error 24\b/i, "the proxy is out of file descriptors"],
  [
    /dns error|lookup address|name or service not known|no address associated|nodename/i,
    "DNS failure",
  ],
  [/connection refused|os error 111\b/i, "connection refused"],
  [/connection reset|broken pipe|os error (104|32)\b/i, "connection reset"],
  [
    /network is unreachable|no route to host|host is unreachable|os error (101|113)\b/i,
    "network unreachable",
  ],
  [/timed out|timeout|os error 110\b/i, "timeout"],
  [
    /tls|ssl|certificate|handshake|corrupt message|invalidcontenttype|peer misbehaved/i,
    "TLS error",
  ],
  [/invalid http|malformed|parse|protocol|message head/i, "malformed response"],
  [/closed|eof|incomplete|cut|mid-body|mid-head|error reading a body/i, "connection closed early"],
];

/** Error classes that say it all by themselves. */
const BY_NAME: Readonly<Record<string, string>> = {
  ConnectionRefused: "connection refused",
  ConnectionReset: "connection reset",
  ConnectionAborted: "connection reset",
  BrokenPipe: "connection reset",
  TimedOut: "timeout",
  ConnectTimeoutError: "connect timeout",
  UnexpectedEof: "connection closed early",
  NotConnected: "connection closed early",
  AddrNotAvailable: "network unreachable",
  NetworkUnreachable: "network unreachable",
  HostUnreachable: "network unreachable",
  UpstreamProtocolError: "malformed response",
  BodyCutError: "connection closed early",
  ClosedBeforeResponse: "connection closed early",
  InvalidData: "malformed response",
  UpstreamTlsError: "TLS error",
};

/**
 * The cause of an upstream failure, from a fixed vocabulary ("connection refused", "DNS
 * failure", "TLS error", "timeout", "malformed response", …); `"request failed"` when no cause
 * is recognised. Safe to show a client: it never contains text from the error.
 */
export function failureCause(error: unknown): string {
  const chain = errorChain(error);
  for (const e of chain) {
    const known = e instanceof Error ? BY_NAME[e.name] : undefined;
    if (known) return known;
  }
  // URLs out first: a path such as `/v1/parse` must not decide the cause.
  const text = chain.map((e) => (e instanceof Error ? e.message : String(e))).join(" | ")
    .replace(/[a-z][a-z0-9+.-]*:\/\/[^\s)]+/gi, "");
  for (const [pattern, cause] of CAUSES) if (pattern.test(text)) return cause;
  return "request failed";
}

/**
 * The error's full text (every nested cause), for the log only: it may name URLs, addresses
 * and upstream bytes. The logger redacts known secrets from it.
 */
export function failureDetail(error: unknown): string {
  return errorChain(error)
    .map((e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e)))
    .join(" <- ");
}

/** The error and its causes (Deno nests the interesting one a level or two down). */
function errorChain(error: unknown): unknown[] {
  const chain: unknown[] = [error];
  let cause = error instanceof Error ? error.cause : undefined;
  for (let i = 0; i < 4 && cause !== undefined; i++) {
    chain.push(cause);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return chain;
}

/** What a TLS failure was about, from a fixed vocabulary (safe to show a client). */
export type TlsFailureKind =
  | "unknown issuer"
  | "name mismatch"
  | "expired"
  | "not yet valid"
  | "client certificate refused"
  | "handshake failed";

/**
 * Why an upstream's TLS handshake failed: `kind` from a fixed vocabulary, for clients; `detail`
 * is Deno's own reason without the request URL, for the log (it may name the upstream's
 * address, e.g. `certificate not valid for name "10.0.0.5"`).
 */
export function tlsFailure(error: unknown): { kind: TlsFailureKind; detail: string } {
  const text = errorChain(error).map((e) => (e instanceof Error ? e.message : String(e)))
    .join(" | ");
  // Deno: `error sending request for url (https://…): client error (Connect): <reason>`.
  const reasons = [...text.matchAll(/client error \([^)]*\):\s*([^|]+)/g)].map((m) => m[1]!.trim());
  const detail = reasons.at(-1) ??
    text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s)]+/gi, "<url>").split(" | ").at(-1)!.trim();
  const kind: TlsFailureKind = /UnknownIssuer|unknown ca|self.signed/i.test(detail)
    ? "unknown issuer"
    : /not valid for name|NotValidForName|name mismatch/i.test(detail)
    ? "name mismatch"
    : /expired/i.test(detail)
    ? "expired"
    : /not valid yet|NotValidYet/i.test(detail)
    ? "not yet valid"
    : /CertificateRequired|BadCertificate|UnknownCA|certificate unknown|AccessDenied/i.test(detail)
    ? "client certificate refused"
    : "handshake failed";
  return { kind, detail };
}
