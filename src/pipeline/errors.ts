/**
 * Proxy-side failures and the one renderer that turns them into HTTP: an OpenAI-style body
 * `{"error": {"message", "type", "code"}}` with the right status, or Anthropic's shape for a
 * client of the Messages API (see `dialect.ts`). Upstream responses never pass through here;
 * they are returned as they are.
 *
 * @module
 */
import type { Dialect } from "./dialect.ts";

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

/**
 * 503: the shared limit store (Redis) failed or timed out and `state.onStoreError` is `reject`
 * (code `store_unavailable`).
 */
export class StoreUnavailableError extends ProxyError {
  override name = "StoreUnavailableError";
  override readonly status = 503;
  override readonly type = "store_unavailable";
}

/** 504: the upstream did not answer in time. */
export class GatewayTimeoutError extends ProxyError {
  override name = "GatewayTimeoutError";
  override readonly status = 504;
  override readonly type = "upstream_timeout";
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" } as const;

/**
 * Anthropic's `error.type` for a status (https://docs.claude.com/en/api/errors and the SDK's
 * `ErrorType`). Our status codes stay ours: a proxy with no upstream left answers 503, not
 * Anthropic's 529; only the type says what Anthropic would call it. Every status not listed
 * falls back by class, as Anthropic documents ("other 4XX" are `invalid_request_error`):
 * - 405, 408 (the client was too slow sending its body: its side, unlike `timeout_error`,
 *   which is the server's) and 499 (nobody reads it) are `invalid_request_error`;
 * - 502 (the upstream failed or broke) and 500 are `api_error`, "an unexpected error";
 * - 503 (no upstream available now: breakers open, every one cooling down after a 429, a
 *   shutdown) is `overloaded_error`, Anthropic's "temporarily overloaded, retry later";
 * - 504 (the upstream did not answer in time) is `timeout_error`, the SDK's gateway timeout.
 */
const ANTHROPIC_TYPES: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  503: "overloaded_error",
  504: "timeout_error",
};

function anthropicType(status: number): string {
  return ANTHROPIC_TYPES[status] ?? (status < 500 ? "invalid_request_error" : "api_error");
}

/**
 * Anthropic's error document. Its `error` has no `code`: ours goes to `details.error_code`,
 * where Anthropic puts its own machine-readable reasons (the TypeScript SDK exposes it as
 * `APIError.errorCode`; other clients ignore fields they do not know). `request_id` is the
 * `request-id` header's value, as in Anthropic's answers (null when there is none).
 */
function anthropicBody(
  status: number,
  message: string,
  code: string,
  requestId: string | undefined,
): string {
  return JSON.stringify({
    type: "error",
    error: { type: anthropicType(status), message, details: { error_code: code } },
    request_id: requestId || null,
  });
}

/** Options of {@linkcode toErrorResponse}. */
export interface ErrorResponseOptions {
  /** Sent as `X-Request-Id` (and `request-id` to Anthropic clients). */
  requestId?: string;
  /** Headers added unless the error sets them (the context's `responseHeaders`). */
  headers?: readonly (readonly [string, string])[];
  /** The client's API dialect (see `dialect.ts`). @default "openai" */
  dialect?: Dialect;
}

/**
 * The only place an error becomes a response. Anything that is not a {@linkcode ProxyError}
 * is a bug: it gets a 500 with a generic message, so internals never leak to clients.
 *
 * OpenAI dialect: `{"error": {"message", "type", "code"}}`. Anthropic dialect:
 * `{"type": "error", "error": {"type", "message", "details": {"error_code"}}, "request_id"}`
 * and a `request-id` header equal to `X-Request-Id` (what Anthropic SDKs report as the
 * error's request id). The status is the same in both.
 */
export function toErrorResponse(error: unknown, options: ErrorResponseOptions = {}): Response {
  const { requestId, headers: extra = [], dialect = "openai" } = options;
  const known = error instanceof ProxyError ? error : undefined;
  const status = known?.status ?? 500;
  const message = known?.message ?? "internal proxy error";
  const code = known?.code ?? "internal_error";
  const body = dialect === "anthropic"
    ? anthropicBody(status, message, code, requestId)
    : JSON.stringify({ error: { message, type: known?.type ?? "proxy_error", code } });
  const headers = new Headers(JSON_HEADERS);
  if (known) {
    for (const [name, value] of Object.entries(known.headers)) {
      headers.set(name, value);
    }
  }
  for (const [name, value] of extra) if (!headers.has(name)) headers.set(name, value);
  if (requestId) {
    headers.set("x-request-id", requestId);
    if (dialect === "anthropic") headers.set("request-id", requestId);
  }
  return new Response(body, { status, headers });
}

/** Options of {@linkcode sseErrorEvent}. */
export interface SseErrorOptions {
  /** The client's API dialect. @default "openai" */
  dialect?: Dialect;
  /**
   * The status the failure would have had before the stream began: it picks the Anthropic
   * error type (502 `api_error`, 503 `overloaded_error`). @default 502
   */
  status?: number;
  /** The request id, for the Anthropic event's `request_id`. */
  requestId?: string;
}

/**
 * The error event that ends an SSE stream the upstream broke, so clients see a failure:
 * `event: error` with `{"error": {"message", "type": "upstream_error", "code"}}`, or for
 * Anthropic clients the document {@linkcode toErrorResponse} sends them (which the Anthropic
 * SDKs' stream readers throw as an `APIError` of that type).
 */
export function sseErrorEvent(
  message: string,
  code: string,
  options: SseErrorOptions = {},
): Uint8Array {
  const data = options.dialect === "anthropic"
    ? anthropicBody(options.status ?? 502, message, code, options.requestId)
    : JSON.stringify({ error: { message, type: "upstream_error", code } });
  return new TextEncoder().encode(`event: error\ndata: ${data}\n\n`);
}
