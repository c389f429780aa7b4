import assert from "node:assert/strict";
import {
  BadGatewayError,
  BadRequestError,
  ClientClosedError,
  ForbiddenError,
  GatewayTimeoutError,
  MethodNotAllowedError,
  NotFoundError,
  NoUpstreamError,
  PayloadTooLargeError,
  ProxyError,
  RateLimitedError,
  RequestTimeoutError,
  sseErrorEvent,
  toErrorResponse,
  UnauthorizedError,
} from "../../src/pipeline/errors.ts";

const CASES = [
  [BadRequestError, 400, "invalid_request_error"],
  [UnauthorizedError, 401, "authentication_error"],
  [NotFoundError, 404, "invalid_request_error"],
  [RequestTimeoutError, 408, "invalid_request_error"],
  [PayloadTooLargeError, 413, "invalid_request_error"],
  [RateLimitedError, 429, "rate_limit_error"],
  [BadGatewayError, 502, "upstream_error"],
  [NoUpstreamError, 503, "upstream_unavailable"],
  [GatewayTimeoutError, 504, "upstream_timeout"],
] as const;

Deno.test("ProxyError subclasses carry their status and OpenAI-style type", () => {
  for (const [ErrorClass, status, type] of CASES) {
    const error = new ErrorClass("what failed", { code: "some_code" });
    assert.ok(error instanceof ProxyError);
    assert.equal(error.status, status, ErrorClass.name);
    assert.equal(error.type, type, ErrorClass.name);
    assert.equal(error.code, "some_code");
    assert.equal(error.name, ErrorClass.name);
    assert.deepEqual(error.headers, {});
  }
  const base = new ProxyError("x", { code: "c" });
  assert.equal(base.status, 500);
  assert.equal(base.type, "proxy_error");
});

Deno.test("ProxyError keeps its cause", () => {
  const cause = new Error("ECONNREFUSED");
  assert.equal(new BadGatewayError("unreachable", { code: "c", cause }).cause, cause);
});

Deno.test("toErrorResponse() renders status and {error: {message, type, code}}", async () => {
  for (const [ErrorClass, status, type] of CASES) {
    const response = toErrorResponse(new ErrorClass(`failed with ${status}`, { code: "why" }));
    assert.equal(response.status, status);
    assert.match(response.headers.get("content-type")!, /^application\/json/);
    assert.deepEqual(await response.json(), {
      error: { message: `failed with ${status}`, type, code: "why" },
    });
  }
});

Deno.test("toErrorResponse() adds the error's headers and the request id", async () => {
  const response = toErrorResponse(
    new RateLimitedError("slow down", {
      code: "rate_limit_exceeded",
      headers: { "retry-after": "2", "x-ratelimit-limit": "10" },
    }),
    { requestId: "req-42" },
  );
  assert.equal(response.headers.get("retry-after"), "2");
  assert.equal(response.headers.get("x-ratelimit-limit"), "10");
  assert.equal(response.headers.get("x-request-id"), "req-42");
  await response.body?.cancel();

  const noId = toErrorResponse(new NotFoundError("x", { code: "c" }));
  assert.equal(noId.headers.has("x-request-id"), false);
  await noId.body?.cancel();
});

Deno.test("toErrorResponse() in the OpenAI dialect sends no request-id header", async () => {
  const response = toErrorResponse(new UnauthorizedError("no key", { code: "missing_api_key" }), {
    requestId: "req-1",
    dialect: "openai",
  });
  assert.equal(response.headers.get("x-request-id"), "req-1");
  assert.equal(response.headers.has("request-id"), false);
  assert.equal(
    await response.text(),
    '{"error":{"message":"no key","type":"authentication_error","code":"missing_api_key"}}',
  );
});

/** Status → Anthropic `error.type`: Anthropic's documented ones, and ours for the rest. */
const ANTHROPIC_CASES = [
  [BadRequestError, 400, "invalid_request_error"],
  [UnauthorizedError, 401, "authentication_error"],
  [ForbiddenError, 403, "permission_error"],
  [NotFoundError, 404, "not_found_error"],
  [MethodNotAllowedError, 405, "invalid_request_error"],
  [RequestTimeoutError, 408, "invalid_request_error"],
  [PayloadTooLargeError, 413, "request_too_large"],
  [RateLimitedError, 429, "rate_limit_error"],
  [ClientClosedError, 499, "invalid_request_error"],
  [ProxyError, 500, "api_error"],
  [BadGatewayError, 502, "api_error"],
  [NoUpstreamError, 503, "overloaded_error"],
  [GatewayTimeoutError, 504, "timeout_error"],
] as const;

Deno.test("toErrorResponse() in the Anthropic dialect renders Anthropic's error document byte for byte", async () => {
  for (const [ErrorClass, status, type] of ANTHROPIC_CASES) {
    const response = toErrorResponse(new ErrorClass(`failed with ${status}`, { code: "why" }), {
      requestId: "req-7",
      dialect: "anthropic",
    });
    assert.equal(response.status, status, ErrorClass.name);
    assert.equal(
      await response.text(),
      `{"type":"error","error":{"type":"${type}","message":"failed with ${status}",` +
        `"details":{"error_code":"why"}},"request_id":"req-7"}`,
      ErrorClass.name,
    );
  }
});

Deno.test("toErrorResponse() in the Anthropic dialect sends request-id, X-Request-Id and the error's headers", async () => {
  const response = toErrorResponse(
    new RateLimitedError('client key "a" is over its rate limit', {
      code: "rate_limited",
      headers: { "retry-after": "2" },
    }),
    {
      requestId: "req-8",
      headers: [["x-request-id", "req-8"], ["x-ratelimit-limit", "10"], ["retry-after", "9"]],
      dialect: "anthropic",
    },
  );
  assert.deepEqual([...response.headers], [
    ["content-type", "application/json; charset=utf-8"],
    ["request-id", "req-8"],
    ["retry-after", "2"],
    ["x-ratelimit-limit", "10"],
    ["x-request-id", "req-8"],
  ]);
  assert.deepEqual(await response.json(), {
    type: "error",
    error: {
      type: "rate_limit_error",
      message: 'client key "a" is over its rate limit',
      details: { error_code: "rate_limited" },
    },
    request_id: "req-8",
  });
});

Deno.test("toErrorResponse() in the Anthropic dialect without a request id: request_id null, no header", async () => {
  const response = toErrorResponse(new Error("secret internals"), { dialect: "anthropic" });
  assert.equal(response.status, 500);
  assert.equal(response.headers.has("request-id"), false);
  assert.equal(response.headers.has("x-request-id"), false);
  assert.equal(
    await response.text(),
    '{"type":"error","error":{"type":"api_error","message":"internal proxy error",' +
      '"details":{"error_code":"internal_error"}},"request_id":null}',
  );
});

Deno.test("toErrorResponse() hides anything that is not a ProxyError behind a generic 500", async () => {
  for (
    const thrown of [
      new Error("password=hunter2 at /srv/app/src/secret.ts:12"),
      new TypeError("x is undefined"),
      "a string",
      undefined,
      { status: 418, message: "looks like an error" },
    ]
  ) {
    const response = toErrorResponse(thrown, { requestId: "rid" });
    assert.equal(response.status, 500);
    assert.equal(response.headers.get("x-request-id"), "rid");
    const text = await response.text();
    assert.deepEqual(JSON.parse(text), {
      error: { message: "internal proxy error", type: "proxy_error", code: "internal_error" },
    });
  }
});

Deno.test("sseErrorEvent() is one complete `event: error` SSE event", () => {
  const text = new TextDecoder().decode(
    sseErrorEvent('upstream "a" broke\n', "upstream_stream_error"),
  );
  assert.match(text, /^event: error\ndata: [^\n]+\n\n$/);
  assert.deepEqual(JSON.parse(text.slice("event: error\ndata: ".length)), {
    error: {
      message: 'upstream "a" broke\n',
      type: "upstream_error",
      code: "upstream_stream_error",
    },
  });
});

Deno.test("sseErrorEvent() for Anthropic clients is Anthropic's error event, typed by status", () => {
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(
    decode(sseErrorEvent('upstream "a" broke', "upstream_stream_error", {
      dialect: "anthropic",
      requestId: "req-9",
    })),
    'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"upstream \\"a\\" broke",' +
      '"details":{"error_code":"upstream_stream_error"}},"request_id":"req-9"}\n\n',
  );
  assert.equal(
    decode(sseErrorEvent("the proxy is shutting down", "shutting_down", {
      dialect: "anthropic",
      status: 503,
      requestId: "req-9",
    })),
    'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",' +
      '"message":"the proxy is shutting down","details":{"error_code":"shutting_down"}},' +
      '"request_id":"req-9"}\n\n',
  );
  // The OpenAI event ignores the options it has no place for.
  assert.equal(
    decode(sseErrorEvent("broke", "upstream_stream_error", { status: 503, requestId: "r" })),
    'event: error\ndata: {"error":{"message":"broke","type":"upstream_error","code":"upstream_stream_error"}}\n\n',
  );
});
