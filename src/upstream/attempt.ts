/**
 * One attempt: send the request to one upstream with its first-byte deadline joined to the
 * client's disconnect signal, and classify what came back. The caller (the proxy loop) decides
 * what to do with the result.
 *
 * @module
 */
import type { AttemptOutcome } from "../resilience/retry.ts";
import { parseRetryAfter } from "../resilience/retry.ts";
import type { Group, GroupMember } from "./group.ts";
import type { BreakerVerdict } from "./upstream.ts";
import type { ClientHeaders } from "./headers.ts";
import {
  NotSentError,
  type UpstreamReply,
  type UpstreamTarget,
  UpstreamTlsError,
} from "../transport/transport.ts";
import type { Deadlines } from "../deadlines.ts";
import { InvalidPathError } from "../routing/request_target.ts";
import { failureCause } from "../transport/failure.ts";

/** Why an attempt's controller was aborted. */
export class AttemptAbort extends Error {
  override name = "AttemptAbort";
  constructor(readonly reason: "firstByte" | "client" | "shutdown", message: string) {
    super(message);
  }
}

/** What one attempt produced. */
export type AttemptResult =
  | {
    readonly kind: "response";
    readonly response: UpstreamReply;
    readonly outcome: AttemptOutcome;
    readonly verdict: BreakerVerdict;
    readonly firstByteMs: number;
    /** Set when the upstream asked to be left alone (429 Retry-After). */
    readonly retryAfterMs?: number | undefined;
  }
  | {
    readonly kind: "error";
    readonly outcome: AttemptOutcome;
    readonly verdict: BreakerVerdict;
    /** The raw error, for the log only (see `failureDetail`). */
    readonly error: unknown;
    /** What the client is told: names the upstream by its config name, never its URL. */
    readonly message: string;
    /** Why the attempt's controller was aborted, when it was (not a first-byte timeout). */
    readonly abortedBy?: "client" | "shutdown";
  };

/** The request as it goes to every attempt: the body read once so retries can replay it. */
export interface OutgoingRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly headers: ClientHeaders;
  readonly body: Uint8Array<ArrayBuffer> | null;
  readonly peerIp: string;
  readonly proto: string;
}

/** What one attempt sends to one upstream. */
export interface PreparedRequest {
  readonly target: UpstreamTarget;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array<ArrayBuffer> | null;
}

/**
 * Builds what an attempt to `member` sends. Runs before the lease is taken, so a failure here
 * touches no breaker, balancer or limiter: it throws a {@linkcode NotSentError}, the client's
 * fault for a rewritten path that leaves the base path, else the proxy's.
 */
export function prepareAttempt(member: GroupMember, request: OutgoingRequest): PreparedRequest {
  try {
    return {
      target: member.upstream.url.target(request.path, request.query),
      method: request.method,
      headers: member.headers.build(request.headers, request),
      body: request.body,
    };
  } catch (error) {
    if (error instanceof InvalidPathError) {
      throw new NotSentError(
        "client",
        `Invalid request path for upstream "${member.name}": ${error.message}`,
        { cause: error },
      );
    }
    throw new NotSentError(
      "proxy",
      `the proxy could not prepare the request for upstream "${member.name}"`,
      { cause: error },
    );
  }
}

/** What {@linkcode sendAttempt} needs besides the member and the request. */
export interface SendOptions {
  readonly group: Group;
  /** The attempt's own; the client's and the shutdown's aborts are joined to it. */
  readonly controller: AbortController;
  /** Monotonic time, ms. */
  readonly now: () => number;
  /** Wall-clock time, epoch ms: an HTTP-date `Retry-After` is a calendar date. */
  readonly wallNow: () => number;
  readonly deadlines: Deadlines;
}

/** Sends one attempt and classifies what came back (or how it failed). */
export async function sendAttempt(
  member: GroupMember,
  request: PreparedRequest,
  options: SendOptions,
): Promise<AttemptResult> {
  const { group, controller } = options;
  const upstream = member.upstream;
  const started = options.now();
  const deadline = options.deadlines.after(
    group.timeouts.firstByteMs,
    () =>
      controller.abort(
        new AttemptAbort(
          "firstByte",
          `upstream "${upstream.name}" sent no response headers within ${group.timeouts.firstByteMs}ms`,
        ),
      ),
  );
  try {
    const response = await group.transport.send(request.target, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal: controller.signal,
    });
    const now = options.now();
    return classifyResponse(group, response, {
      firstByteMs: now - started,
      wallNow: options.wallNow,
      url: request.target.url,
    });
  } catch (error) {
    return classifyError(group, member, controller.signal, error);
  } finally {
    deadline.cancel();
  }
}

function classifyResponse(
  group: Group,
  response: UpstreamReply,
  { firstByteMs, wallNow, url }: { firstByteMs: number; wallNow: () => number; url: string },
): AttemptResult {
  const status = response.status;
  if (group.viaProxy && isProxyAuthFailure(response, url)) {
    response.body?.cancel().catch(() => {});
    return {
      kind: "error",
      outcome: { kind: "proxy" },
      verdict: "neutral",
      error: new Error(`outbound proxy answered ${status}`),
      message: `outbound proxy refused the request (${status}): check the proxy credentials`,
    };
  }
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers, wallNow());
    return {
      kind: "response",
      response,
      outcome: retryAfterMs === undefined
        ? { kind: "response", status }
        : { kind: "response", status, retryAfterMs },
      verdict: "neutral",
      firstByteMs,
      retryAfterMs,
    };
  }
  return {
    kind: "response",
    response,
    outcome: { kind: "response", status },
    verdict: status >= 500 ? "failure" : "success",
    firstByteMs,
  };
}

/**
 * 407 only ever comes from a proxy; a 401 is the proxy's when it asks for proxy credentials.
 * tinyproxy answers wrong credentials with a 401 and `WWW-Authenticate` instead: for a plain
 * HTTP upstream (no tunnel, so the proxy relays the upstream's answers and adds `Via` to them)
 * a challenge without `Via` is the proxy's own. Through a CONNECT tunnel (https) a 401 is
 * always the upstream's: the proxy's refusals there fail the fetch itself.
 */
function isProxyAuthFailure(response: UpstreamReply, url: string): boolean {
  if (response.status === 407) return true;
  if (response.status !== 401) return false;
  const headers = response.headers;
  return headers.has("proxy-authenticate") ||
    (url.startsWith("http:") && headers.has("www-authenticate") && !headers.has("via"));
}

function classifyError(
  group: Group,
  member: GroupMember,
  signal: AbortSignal,
  error: unknown,
): AttemptResult {
  const name = member.upstream.name;
  // Refused before a byte was written: whose fault it is decides the answer, never the
  // upstream's breaker.
  if (error instanceof NotSentError) {
    return {
      kind: "error",
      outcome: { kind: "not_sent", fault: error.fault },
      verdict: "neutral",
      error,
      message: `the request to upstream "${name}" was not sent: ${error.message}`,
    };
  }
  // The proxy itself is out of file descriptors (EMFILE, ENFILE): the connect never left this
  // process, so it is not the upstream's failure and another upstream would fare no better.
  if (isDescriptorExhaustion(error)) {
    return classifyError(group, member, signal, new DescriptorsExhaustedError(error));
  }
  const reason = signal.aborted ? signal.reason : undefined;
  if (reason instanceof AttemptAbort) {
    if (reason.reason === "firstByte") {
      return {
        kind: "error",
        outcome: { kind: "timeout", phase: "firstByte" },
        verdict: "failure",
        error,
        message: reason.message,
      };
    }
    return {
      kind: "error",
      outcome: { kind: "aborted" },
      verdict: "neutral",
      error,
      message: reason.message,
      abortedBy: reason.reason,
    };
  }
  // A certificate the proxy does not trust: the upstream is reachable, but unusable as
  // configured until its certificate or `httpClient.tls` changes. It counts against the
  // breaker (every request to it would fail the same way) and is never retried on it.
  // Through an https proxy the refused certificate may be the proxy's own: see below.
  if (error instanceof UpstreamTlsError && !viaHttpsProxy(group)) {
    return {
      kind: "error",
      outcome: { kind: "tls" },
      verdict: "failure",
      error,
      message: `TLS handshake with upstream "${name}" failed: ${error.kind}`,
    };
  }
  // Clients learn the upstream's config name and a cause from a fixed vocabulary; the error's
  // own text (URL with its configured query, addresses, upstream bytes) goes to the log only.
  const cause = failureCause(error);
  // Through an outbound proxy every connection goes to the proxy: a connection that fails is
  // the proxy's failure (unreachable, refused the tunnel), not the upstream's, so it must not
  // count against the upstream's breaker.
  if (group.viaProxy) {
    return {
      kind: "error",
      outcome: { kind: "proxy" },
      verdict: "neutral",
      error,
      message: `outbound proxy failed for upstream "${name}": ${cause}`,
    };
  }
  return {
    kind: "error",
    outcome: { kind: "connect" },
    verdict: "failure",
    error,
    // A malformed answer reached us: the upstream is reachable, but broken.
    message: cause === "malformed response"
      ? `upstream "${name}" sent a malformed response`
      : `cannot reach upstream "${name}": ${cause}`,
  };
}

function viaHttpsProxy(group: Group): boolean {
  return group.config.httpClient.proxy?.url.toLowerCase().startsWith("https:") ?? false;
}

/** The proxy ran out of file descriptors before it could connect. */
export class DescriptorsExhaustedError extends NotSentError {
  override name = "DescriptorsExhaustedError";
  constructor(cause: unknown) {
    super("proxy", "the proxy is out of file descriptors", { cause });
  }
}

/** EMFILE (24) or ENFILE (23) anywhere in an error's cause chain. */
function isDescriptorExhaustion(error: unknown): boolean {
  for (let e = error, i = 0; e instanceof Error && i < 4; e = e.cause, i++) {
    if (/\(os error 2[34]\)/.test(e.message)) return true;
  }
  return false;
}
