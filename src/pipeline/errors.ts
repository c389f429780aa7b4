/**
 * Proxy-side failures and the one renderer that turns them into HTTP: an OpenAI-style body
 * `{"error": {"message", "type", "code"}}` with the right status. Upstream responses never
 * pass through here; they are returned as they are.
 *
 * @module
 */

/** A failure the proxy answers for itself. `status` is the HTTP status to send. */
export class ProxyError extends Error {
  override name = "ProxyError";
  /** HTTP status. */
  readonly status: number = 500;
  /** OpenAI-style `error.type`. */
  readonly type: string = "proxy_error";
  /** OpenAI-style `error.code`: a stable machine-readable reason. */
  readonly code: string;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    message: string,
    options: { code: string; cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, { cause: options.cause });
    this.code = options.code;
    this.headers = options.headers ?? {};
  }
}

/** 400: the request cannot be understood. */
export class BadRequestError extends ProxyError {
  override name = "BadRequestError";
  override readonly status = 400;
  override readonly type = "invalid_request_error";
}

/** 401: inbound authentication failed (admin token, client key). */
export class UnauthorizedError extends ProxyError {
  override name = "UnauthorizedError";
  override readonly status = 401;
  override readonly type = "authentication_error";
}

/** 403: the client key may not use what the request asks for (group, model). */
export class ForbiddenError extends ProxyError {
  override name = "ForbiddenError";
  override readonly status = 403;
  override readonly type = "permission_error";
}

/** 404: no route for this request. */
export class NotFoundError extends ProxyError {
  override name = "NotFoundError";
  override readonly status = 404;
  override readonly type = "invalid_request_error";
}

/** 405: a method the proxy does not carry upstream (`TRACE`, `TRACK`, `CONNECT`). */
export class MethodNotAllowedError extends ProxyError {
  override name = "MethodNotAllowedError";
  override readonly status = 405;
  override readonly type = "invalid_request_error";
}

/** 408: the client was too slow sending its request. */
export class RequestTimeoutError extends ProxyError {
  override name = "RequestTimeoutError";
  override readonly status = 408;
  override readonly type = "invalid_request_error";
}

/** 413: the request body exceeds `httpServer.maxBodySize`. */
export class PayloadTooLargeError extends ProxyError {
  override name = "PayloadTooLargeError";
  override readonly status = 413;
  override readonly type = "invalid_request_error";
}

/**
 * 499 (nginx's convention): the client went away before its answer was complete. Nobody reads
 * the response; the status is for the access log and `llmproxy_http_requests_total`, so a
 * client that hangs up does not count as a 502 and inflate the error rate.
 */
export class ClientClosedError extends ProxyError {
  override name = "ClientClosedError";
  override readonly status = 499;
  override readonly type = "client_closed_request";
}

/** 429: a rate limit (per client IP, per client key, or every upstream's) or a budget is exhausted. */
export class RateLimitedError extends ProxyError {
  override name = "RateLimitedError";
  override readonly status = 429;
  override readonly type = "rate_limit_error";
}

/** 502: the upstream failed (connection refused, broken, outbound proxy refused). */
export class BadGatewayError extends ProxyError {
  override name = "BadGatewayError";
  override readonly status = 502;
  override readonly type = "upstream_error";
}

/** 503: no upstream of the group is available (breakers open, cooling down after 429). */
export class NoUpstreamError extends ProxyError {
  override name = "NoUpstreamError";
  override readonly status = 503;
  override readonly type = "upstream_unavailable";
}

/** 504: the upstream did not answer in time. */
export class GatewayTimeoutError extends ProxyError {
  override name = "GatewayTimeoutError";
  override readonly status = 504;
  override readonly type = "upstream_timeout";
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" } as const;

/**
 * The only place an error becomes a response. Anything that is not a {@linkcode ProxyError}
 * is a bug: it gets a 500 with a generic message, so internals never leak to clients.
 */
export function toErrorResponse(
  error: unknown,
  requestId?: string,
  extra: readonly (readonly [string, string])[] = [],
): Response {
  const known = error instanceof ProxyError ? error : undefined;
  const status = known?.status ?? 500;
  const body = {
    error: {
      message: known?.message ?? "internal proxy error",
      type: known?.type ?? "proxy_error",
      code: known?.code ?? "internal_error",
    },
  };
  const headers = new Headers(JSON_HEADERS);
  if (known) {
    for (const [name, value] of Object.entries(known.headers)) {
      headers.set(name, value);
    }
  }
  for (const [name, value] of extra) if (!headers.has(name)) headers.set(name, value);
  if (requestId) headers.set("x-request-id", requestId);
  return new Response(JSON.stringify(body), { status, headers });
}

/** The error event that ends an SSE stream the upstream broke, so clients see a failure. */
export function sseErrorEvent(message: string, code: string): Uint8Array {
  const data = JSON.stringify({ error: { message, type: "upstream_error", code } });
  return new TextEncoder().encode(`event: error\ndata: ${data}\n\n`);
}
