import assert from "node:assert/strict";
import {
  type AuthConfig,
  type HeaderOp,
  RequestHeaderPlan,
  responseHeaders,
} from "../../src/upstream/headers.ts";

const FACTS = { peerIp: "203.0.113.5", proto: "http" };

/** A plan whose `build()` result is wrapped in `Headers` for case-insensitive assertions. */
function plan(options: { auth?: AuthConfig; ops?: HeaderOp[]; userAgent?: string } = {}) {
  const built = new RequestHeaderPlan({
    auth: options.auth ?? { type: "none" },
    userAgent: options.userAgent ?? "LLMProxy/1.0",
    ops: options.ops ?? [],
  });
  return {
    build: (client: Headers, facts: typeof FACTS) => new Headers(built.build(client, facts)),
  };
}

Deno.test("RequestHeaderPlan strips hop-by-hop headers, Host and Content-Length", () => {
  const client = new Headers({
    connection: "x-hop",
    "x-hop": "1",
    upgrade: "h2c",
    host: "proxy.local:3000",
    "content-length": "12",
    "content-type": "application/json",
  });
  const headers = plan().build(client, FACTS);
  for (const name of ["connection", "x-hop", "upgrade", "host", "content-length"]) {
    assert.equal(headers.has(name), false, name);
  }
  assert.equal(headers.get("content-type"), "application/json");
  assert.equal(headers.get("x-forwarded-host"), "proxy.local:3000");
  // The client's headers are not modified.
  assert.equal(client.get("host"), "proxy.local:3000");
});

Deno.test("RequestHeaderPlan sets X-Forwarded-For/-Proto and the configured User-Agent", () => {
  const fresh = plan({ userAgent: "Agent/2" }).build(new Headers({ "user-agent": "curl" }), FACTS);
  assert.equal(fresh.get("x-forwarded-for"), "203.0.113.5");
  assert.equal(fresh.get("x-forwarded-proto"), "http");
  assert.equal(fresh.get("user-agent"), "Agent/2");
  assert.equal(fresh.has("x-forwarded-host"), false);

  const appended = plan().build(
    new Headers({ "x-forwarded-for": "198.51.100.1, 10.0.0.2" }),
    { peerIp: "10.0.0.3", proto: "https" },
  );
  assert.equal(appended.get("x-forwarded-for"), "198.51.100.1, 10.0.0.2, 10.0.0.3");
  assert.equal(appended.get("x-forwarded-proto"), "https");
});

Deno.test("RequestHeaderPlan bearer auth replaces the client's Authorization", () => {
  const headers = plan({ auth: { type: "bearer", token: "sk-upstream" } }).build(
    new Headers({ authorization: "Bearer client-key" }),
    FACTS,
  );
  assert.equal(headers.get("authorization"), "Bearer sk-upstream");
});

Deno.test("RequestHeaderPlan basic auth encodes UTF-8 credentials", () => {
  const headers = plan({ auth: { type: "basic", username: "üser", password: "pä:ss🔑" } })
    .build(new Headers({ authorization: "Bearer client-key" }), FACTS);
  const value = headers.get("authorization")!;
  assert.match(value, /^Basic [A-Za-z0-9+/]+=*$/);
  const bytes = Uint8Array.from(atob(value.slice(6)), (c) => c.charCodeAt(0));
  assert.equal(new TextDecoder().decode(bytes), "üser:pä:ss🔑");
  assert.equal(
    plan({ auth: { type: "basic", username: "a", password: "b" } }).build(new Headers(), FACTS)
      .get("authorization"),
    `Basic ${btoa("a:b")}`,
  );
});

Deno.test("RequestHeaderPlan auth none keeps the client's Authorization", () => {
  const headers = plan().build(new Headers({ authorization: "Bearer client-key" }), FACTS);
  assert.equal(headers.get("authorization"), "Bearer client-key");
  assert.equal(plan().build(new Headers(), FACTS).has("authorization"), false);
});

Deno.test("RequestHeaderPlan always asks for identity, so fetch never decodes the body", () => {
  assert.equal(plan().build(new Headers(), FACTS).get("accept-encoding"), "identity");
  // Deno's fetch would decode an allowed encoding yet keep Content-Encoding on the response.
  assert.equal(
    plan().build(new Headers({ "accept-encoding": "gzip, br" }), FACTS).get("accept-encoding"),
    "identity",
  );
});

Deno.test("RequestHeaderPlan ops: insert only when absent, replace sets, remove deletes", () => {
  const headers = plan({
    ops: [
      { op: "insert", key: "X-New", value: "inserted" },
      { op: "insert", key: "X-Existing", value: "not-applied" },
      { op: "replace", key: "X-Replaced", value: "replaced" },
      { op: "replace", key: "X-Created", value: "created" },
      { op: "remove", key: "X-Removed" },
      { op: "remove", key: "X-Absent" },
    ],
  }).build(
    new Headers({ "x-existing": "client", "x-replaced": "client", "x-removed": "client" }),
    FACTS,
  );
  assert.equal(headers.get("x-new"), "inserted");
  assert.equal(headers.get("x-existing"), "client");
  assert.equal(headers.get("x-replaced"), "replaced");
  assert.equal(headers.get("x-created"), "created");
  assert.equal(headers.has("x-removed"), false);
  assert.equal(headers.has("x-absent"), false);
});

Deno.test("RequestHeaderPlan ops run last: they see and may override what the proxy set", () => {
  const headers = plan({
    auth: { type: "bearer", token: "sk" },
    ops: [
      { op: "remove", key: "X-Forwarded-For" },
      { op: "replace", key: "User-Agent", value: "custom" },
      { op: "insert", key: "Authorization", value: "never" },
      { op: "replace", key: "Accept-Encoding", value: "gzip" },
    ],
  }).build(new Headers(), FACTS);
  assert.equal(headers.has("x-forwarded-for"), false);
  assert.equal(headers.get("user-agent"), "custom");
  assert.equal(headers.get("authorization"), "Bearer sk");
  assert.equal(headers.get("accept-encoding"), "gzip");
});

Deno.test("RequestHeaderPlan ops apply in declared order", () => {
  const headers = plan({
    ops: [
      { op: "replace", key: "X-A", value: "1" },
      { op: "remove", key: "X-A" },
      { op: "insert", key: "X-A", value: "2" },
      { op: "insert", key: "X-B" },
    ],
  }).build(new Headers(), FACTS);
  assert.equal(headers.get("x-a"), "2");
  assert.equal(headers.get("x-b"), "");
});

Deno.test("responseHeaders() strips hop-by-hop headers and keeps the rest", () => {
  const upstream = new Headers({
    connection: "keep-alive, x-hop",
    "keep-alive": "timeout=5",
    "transfer-encoding": "chunked",
    "x-hop": "1",
    "content-type": "text/event-stream",
    "content-encoding": "gzip",
    "x-request-id": "up-1",
  });
  const headers = new Headers(responseHeaders(upstream));
  assert.deepEqual([...headers.keys()], ["content-encoding", "content-type", "x-request-id"]);
  assert.equal(upstream.get("x-hop"), "1", "the upstream's headers are not modified");
  // The copy is mutable (later stages add headers).
  headers.set("x-request-id", "mine");
  assert.equal(headers.get("x-request-id"), "mine");
});

Deno.test("responseHeaders() sets the proxy's headers over the upstream's, keeping its request id", () => {
  const upstream = new Headers({
    "x-request-id": "req_upstream",
    "x-ratelimit-limit": "999",
    "content-type": "application/json",
  });
  const headers = new Headers(
    responseHeaders(upstream, [["x-request-id", "mine"], ["x-ratelimit-limit", "2"]]),
  );
  assert.equal(headers.get("x-request-id"), "mine");
  assert.equal(headers.get("x-upstream-request-id"), "req_upstream");
  assert.equal(headers.get("x-ratelimit-limit"), "2");
  assert.equal(headers.get("content-type"), "application/json");
});

Deno.test("RequestHeaderPlan drops Expect: the body was read already", () => {
  const headers = plan().build(new Headers({ expect: "100-continue", "x-kept": "1" }), FACTS);
  assert.equal(headers.has("expect"), false);
  assert.equal(headers.get("x-kept"), "1");
});
