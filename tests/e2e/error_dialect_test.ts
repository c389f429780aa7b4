/**
 * Errors in the client's dialect: the proxy's own errors on the Messages API path reach the
 * Anthropic SDK as its typed errors, with our message, our code (`errorCode`) and our request
 * id (`requestID`); `/v1/chat/completions` keeps the OpenAI shape.
 */
import assert from "node:assert/strict";
import Anthropic, {
  APIError,
  AuthenticationError,
  ContentTooLargeError,
  InternalServerError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
} from "@anthropic-ai/sdk";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { freePort, rawRequest } from "../_helpers/raw_http.ts";

const KEY = "sk-ant-client-4d2e8f1a6c";
const SLOW_KEY = "sk-ant-slow-9b7c5e3d1f";

function config(mock: MockUpstream, deadPort: number): string {
  return `httpServer:
  maxBodySize: 4096
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
      routing:
        - {path: "/dead/*", targetGroup: dead}
        - {path: "/breaker/*", targetGroup: breaker}
        - {path: "/stream/*", targetGroup: stream}
  admin: {port: 0}
upstreams:
  - {name: echo, url: "${mock.url}/echo/"}
  - {name: dead, url: "http://127.0.0.1:${deadPort}/"}
  - name: fragile
    url: "http://127.0.0.1:${deadPort}/"
    breaker: {minRequests: 1, threshold: 0.5, cooldown: 600}
  - {name: chat, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - {name: g, upstreams: [{name: echo}]}
  - {name: dead, upstreams: [{name: dead}], httpClient: {retry: {attempts: 0}}}
  - {name: breaker, upstreams: [{name: fragile}], httpClient: {retry: {attempts: 0}}}
  - {name: stream, upstreams: [{name: chat}], httpClient: {retry: {attempts: 0}}}
clientKeys:
  - {name: claude, key: "${KEY}", models: ["claude-ok*"]}
  - {name: slow, key: "${SLOW_KEY}", ratelimit: {perSecond: 0.001, burst: 1}}
`;
}

async function withProxy(fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>) {
  const mock = await startMockUpstream({ name: "dialect-mock" });
  const proxy = await startTestProxy(config(mock, freePort()));
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

function client(proxy: TestProxy, prefix: string, apiKey: string | null = KEY): Anthropic {
  return new Anthropic({
    baseURL: `${proxy.url()}${prefix}`,
    apiKey,
    authToken: null,
    maxRetries: 0,
    // No key at all: the SDK sends none when Authorization is explicitly left out.
    ...(apiKey === null ? { defaultHeaders: { authorization: null } } : {}),
  });
}

function ask(
  anthropic: Anthropic,
  options: { model?: string; content?: string; headers?: Record<string, string> } = {},
): Promise<unknown> {
  return anthropic.messages.create({
    model: options.model ?? "claude-ok-1",
    max_tokens: 16,
    messages: [{ role: "user", content: options.content ?? "hello" }],
  }, options.headers ? { headers: options.headers } : {}).then(
    () => assert.fail("expected an error"),
    (error) => error,
  );
}

/** Checks what every proxy error on the Messages API carries through the SDK. */
function assertProxyError(
  error: unknown,
  expected: {
    // deno-lint-ignore no-explicit-any
    class: abstract new (...args: any[]) => APIError;
    status: number;
    type: string;
    code: string;
    message: RegExp;
  },
): void {
  assert.ok(error instanceof expected.class, String(error));
  const e = error as APIError;
  assert.equal(e.status, expected.status);
  assert.equal(e.type, expected.type);
  assert.equal(e.errorCode, expected.code);
  assert.match(e.apiMessage ?? "", expected.message);
  // The SDK's own message is the status and the whole body, as for Anthropic's errors.
  assert.ok(e.message.startsWith(`${expected.status} {"type":"error"`), e.message);
  assert.ok(e.requestID, "request-id header");
  assert.equal(e.requestID, e.headers?.get("x-request-id"));
  assert.equal((e.error as { request_id?: string }).request_id, e.requestID);
}

Deno.test("e2e error dialect: 401 without a key and with a wrong one, as AuthenticationError", async () => {
  await withProxy(async (proxy, mock) => {
    assertProxyError(await ask(client(proxy, "/anthropic", null)), {
      class: AuthenticationError,
      status: 401,
      type: "authentication_error",
      code: "missing_api_key",
      message: /no API key/,
    });
    assertProxyError(await ask(client(proxy, "/anthropic", "sk-ant-wrong")), {
      class: AuthenticationError,
      status: 401,
      type: "authentication_error",
      code: "invalid_api_key",
      message: /the API key is not valid/,
    });
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e error dialect: 403 model_not_allowed as PermissionDeniedError", async () => {
  await withProxy(async (proxy, mock) => {
    assertProxyError(await ask(client(proxy, "/anthropic"), { model: "claude-other" }), {
      class: PermissionDeniedError,
      status: 403,
      type: "permission_error",
      code: "model_not_allowed",
      message: /client key "claude" may not use model "claude-other"/,
    });
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e error dialect: 429 of a key's rate limit as RateLimitError, with Retry-After", async () => {
  await withProxy(async (proxy, mock) => {
    const anthropic = client(proxy, "/anthropic", SLOW_KEY);
    const first = await anthropic.messages.create({
      model: "claude-ok-1",
      max_tokens: 16,
      messages: [{ role: "user", content: "hello" }],
    }) as unknown as { path: string };
    assert.equal(first.path, "/echo/anthropic/v1/messages");
    const error = await ask(anthropic);
    assertProxyError(error, {
      class: RateLimitError,
      status: 429,
      type: "rate_limit_error",
      code: "rate_limited",
      message: /client key "slow" is over its rate limit/,
    });
    assert.ok(Number((error as RateLimitError).headers?.get("retry-after")) > 0);
    assert.equal(mock.requests.length, 1);
  });
});

Deno.test("e2e error dialect: 502 upstream down and 503 breaker open as InternalServerError and ServiceUnavailableError", async () => {
  await withProxy(async (proxy) => {
    assertProxyError(await ask(client(proxy, "/dead")), {
      class: InternalServerError,
      status: 502,
      type: "api_error",
      code: "upstream_unreachable",
      message: /cannot reach upstream "dead": connection refused/,
    });
    // The first failure opens the breaker; the next request finds no upstream.
    const opened = await ask(client(proxy, "/breaker"));
    assert.equal((opened as APIError).status, 502);
    assertProxyError(await ask(client(proxy, "/breaker")), {
      class: ServiceUnavailableError,
      status: 503,
      type: "overloaded_error",
      code: "no_upstream_available",
      message: /Cannot select upstream for group "breaker"/,
    });
  });
});

Deno.test("e2e error dialect: 413 body too large as request_too_large", async () => {
  await withProxy(async (proxy, mock) => {
    assertProxyError(await ask(client(proxy, "/anthropic"), { content: "x".repeat(8192) }), {
      class: ContentTooLargeError,
      status: 413,
      type: "request_too_large",
      code: "request_too_large",
      message: /request body exceeds the limit of 4096 bytes/,
    });
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e error dialect: a stream the upstream breaks ends with Anthropic's error event", async () => {
  await withProxy(async (proxy) => {
    const stream = await client(proxy, "/stream").messages.create({
      model: "claude-ok-1",
      max_tokens: 16,
      stream: true,
      messages: [{ role: "user", content: "hello" }],
    }, { headers: { "x-mock-cut-after": "2" } });
    const error = await (async () => {
      // The mock's chunks are OpenAI's (no `event:` line): the SDK skips them.
      for await (const _ of stream) { /* skipped */ }
    })().then(() => assert.fail("expected an error event"), (e) => e);
    assert.ok(error instanceof APIError, String(error));
    assert.equal(error.type, "api_error");
    assert.equal(error.errorCode, "upstream_stream_error");
    assert.match(error.apiMessage ?? "", /^upstream stream broke/);
    const body = error.error as { type: string; request_id: string };
    assert.equal(body.type, "error");
    assert.equal(body.request_id, error.headers?.get("x-request-id"));
  });
});

Deno.test("e2e error dialect: raw bytes on /v1/messages, hostile input too; /v1/chat/completions stays OpenAI's", async () => {
  await withProxy(async (proxy) => {
    const missing = await fetch(`${proxy.url()}/v1/messages`, {
      method: "POST",
      headers: { "x-request-id": "req-dialect-1", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get("request-id"), "req-dialect-1");
    assert.equal(missing.headers.get("x-request-id"), "req-dialect-1");
    assert.equal(
      await missing.text(),
      '{"type":"error","error":{"type":"authentication_error","message":"no API key: send it as Authorization: Bearer <key>, x-api-key or api-key","details":{"error_code":"missing_api_key"}},"request_id":"req-dialect-1"}',
    );

    const count = await fetch(`${proxy.url()}/anthropic/v1/messages/count_tokens`, {
      method: "POST",
      headers: { "x-api-key": KEY, "x-request-id": "req-dialect-2" },
      body: "x".repeat(5000),
    });
    assert.equal(count.status, 413);
    assert.equal(count.headers.get("request-id"), "req-dialect-2");
    assert.equal((await count.json()).error.type, "request_too_large");

    // Hostile input a client's fetch cannot even send: a refused method, a path leaving the root.
    const port = Number(new URL(proxy.url()).port);
    for (
      const [method, target, status, type, code] of [
        ["TRACE", "/anthropic/v1/messages", 405, "invalid_request_error", "method_not_allowed"],
        [
          "POST",
          "/v1/messages/%2e%2e/%2e%2e/%2e%2e/x",
          400,
          "invalid_request_error",
          "invalid_path",
        ],
      ] as const
    ) {
      const raw = await rawRequest(
        port,
        `${method} ${target} HTTP/1.1\nHost: proxy\nx-api-key: ${KEY}\nx-request-id: req-raw\nConnection: close`,
      );
      assert.equal(raw.status, status, raw.raw);
      assert.equal(raw.get("request-id"), "req-raw");
      if (status === 405) assert.match(raw.get("allow") ?? "", /\bPOST\b/);
      const body = JSON.parse(new TextDecoder().decode(raw.body));
      assert.deepEqual(
        { type: body.type, errorType: body.error.type, code: body.error.details.error_code },
        { type: "error", errorType: type, code },
      );
    }

    // The upstream's own error passes through as it is.
    const upstream = await fetch(`${proxy.url()}/stream/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "x-mock-status": "400" },
      body: '{"model":"claude-ok-1"}',
    });
    assert.equal(upstream.status, 400);
    assert.equal(upstream.headers.has("request-id"), false);
    assert.deepEqual(Object.keys((await upstream.json()).error), [
      "message",
      "type",
      "param",
      "code",
    ]);

    const chat = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: { "x-request-id": "req-dialect-3" },
      body: "{}",
    });
    assert.equal(chat.status, 401);
    assert.equal(chat.headers.get("x-request-id"), "req-dialect-3");
    assert.equal(chat.headers.has("request-id"), false);
    assert.equal(
      await chat.text(),
      '{"error":{"message":"no API key: send it as Authorization: Bearer <key>, x-api-key or api-key","type":"authentication_error","code":"missing_api_key"}}',
    );
  });
});
