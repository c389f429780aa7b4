import assert from "node:assert/strict";
import {
  BadGatewayError,
  BadRequestError,
  GatewayTimeoutError,
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
    "req-42",
  );
  assert.equal(response.headers.get("retry-after"), "2");
  assert.equal(response.headers.get("x-ratelimit-limit"), "10");
  assert.equal(response.headers.get("x-request-id"), "req-42");
  await response.body?.cancel();

  const noId = toErrorResponse(new NotFoundError("x", { code: "c" }));
  assert.equal(noId.headers.has("x-request-id"), false);
  await noId.body?.cancel();
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
    const response = toErrorResponse(thrown, "rid");
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
