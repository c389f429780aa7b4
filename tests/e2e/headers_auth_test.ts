import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { assertErrorBody, freePort, rawRequest } from "../_helpers/raw_http.ts";

const TOKEN = "sk-test-SECRET-token-4711";
const USER = "svc-user";
const PASSWORD = "pa55-SECRET-word";
const BASIC = `Basic ${btoa(`${USER}:${PASSWORD}`)}`;

async function withProxy(
  upstreamExtra: string,
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
  extra: { group?: string; captureLogs?: boolean } = {},
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/echo`], { upstream: upstreamExtra, group: extra.group }),
    extra.captureLogs ? { captureLogs: true, logLevel: "debug" } : {},
  );
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

/** Sends a request through the proxy and returns the headers the upstream received. */
async function received(
  proxy: TestProxy,
  headers: Record<string, string> = {},
): Promise<Record<string, string>> {
  const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: "{}",
  });
  assert.equal(response.status, 200);
  return (await response.json()).headers;
}

Deno.test("e2e auth: bearer credentials are injected and replace the client's", async () => {
  await withProxy(`auth: {type: bearer, token: "${TOKEN}"}`, async (proxy) => {
    assert.equal((await received(proxy)).authorization, `Bearer ${TOKEN}`);
    const replaced = await received(proxy, { authorization: "Bearer client-key-xyz" });
    assert.equal(replaced.authorization, `Bearer ${TOKEN}`);
    assert.ok(!JSON.stringify(replaced).includes("client-key-xyz"));
  });
});

Deno.test("e2e auth: basic credentials are injected and replace the client's", async () => {
  await withProxy(
    `auth: {type: basic, username: ${USER}, password: "${PASSWORD}"}`,
    async (proxy) => {
      assert.equal((await received(proxy)).authorization, BASIC);
      const replaced = await received(proxy, { authorization: "Bearer client-key-xyz" });
      assert.equal(replaced.authorization, BASIC);
    },
  );
});

Deno.test("e2e auth: with auth none the client's Authorization passes through", async () => {
  await withProxy("auth: {type: none}", async (proxy) => {
    assert.equal(
      (await received(proxy, { authorization: "Bearer client-key-xyz" })).authorization,
      "Bearer client-key-xyz",
    );
    assert.equal((await received(proxy)).authorization, undefined);
  });
});

Deno.test("e2e auth: credentials never appear in debug logs nor in error bodies", async () => {
  const mock = await startMockUpstream();
  const closed = freePort();
  const yaml = `httpServer:
  forwards:
    - {name: ok, port: 0, address: 127.0.0.1, defaultGroup: good}
    - {name: bad, port: 0, address: 127.0.0.1, defaultGroup: dead}
upstreams:
  - name: bearer
    url: "${mock.url}/v1/chat/completions"
    auth: {type: bearer, token: "${TOKEN}"}
  - name: basic
    url: "${mock.url}/v1/chat/completions"
    auth: {type: basic, username: ${USER}, password: "${PASSWORD}"}
  - name: gone
    url: "http://127.0.0.1:${closed}/v1/chat/completions"
    auth: {type: bearer, token: "${TOKEN}"}
upstreamGroups:
  - {name: good, upstreams: [{name: bearer}, {name: basic}]}
  - name: dead
    upstreams: [{name: gone}]
    httpClient: {retry: {attempts: 0}}
`;
  const proxy = await startTestProxy(yaml, { captureLogs: true, logLevel: "debug" });
  const secrets = [TOKEN, PASSWORD, btoa(`${USER}:${PASSWORD}`)];
  try {
    for (let i = 0; i < 2; i++) {
      const ok = await fetch(`${proxy.url("ok")}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", stream: i === 1 }),
      });
      assert.equal(ok.status, 200);
      await ok.text();
    }
    // Both upstreams were used, so both credentials went out.
    const sent = mock.requests.map((r) => r.headers.get("authorization"));
    assert.deepEqual(sent.sort(), [BASIC, `Bearer ${TOKEN}`].sort());

    const failed = await fetch(`${proxy.url("bad")}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer client-key-xyz" },
      body: "{}",
    });
    const text = await failed.clone().text();
    await assertErrorBody(failed, 502);
    for (const secret of secrets) assert.ok(!text.includes(secret), `error body leaks ${secret}`);

    assert.ok(proxy.logs.length > 0, "the proxy logged nothing: the check would be vacuous");
    const logs = proxy.logs.join("\n");
    for (const secret of [...secrets, "client-key-xyz"]) {
      assert.ok(!logs.includes(secret), `logs leak ${secret}:\n${logs}`);
    }
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e headers: insert only when absent, replace, remove", async () => {
  const ops = `headers:
  - {op: insert, key: X-Ins, value: from-proxy}
  - {op: replace, key: X-Rep, value: forced}
  - {op: remove, key: X-Rem}
  - {op: insert, key: X-Org, value: org-1}`;
  await withProxy(ops, async (proxy) => {
    const withClientValues = await received(proxy, {
      "x-ins": "from-client",
      "x-rep": "from-client",
      "x-rem": "secret-internal",
    });
    assert.equal(withClientValues["x-ins"], "from-client");
    assert.equal(withClientValues["x-rep"], "forced");
    assert.equal(withClientValues["x-rem"], undefined);
    assert.equal(withClientValues["x-org"], "org-1");

    const without = await received(proxy);
    assert.equal(without["x-ins"], "from-proxy");
    assert.equal(without["x-rep"], "forced");
    assert.equal(without["x-rem"], undefined);
  });
});

Deno.test("e2e headers: header ops run last (they can remove the forwarding headers)", async () => {
  await withProxy(
    "headers: [{op: remove, key: X-Forwarded-For}, {op: replace, key: User-Agent, value: ua-op}]",
    async (proxy) => {
      const headers = await received(proxy);
      assert.equal(headers["x-forwarded-for"], undefined);
      assert.equal(headers["user-agent"], "ua-op");
    },
  );
});

Deno.test("e2e headers: X-Forwarded-* are set and User-Agent comes from httpClient.agent", async () => {
  await withProxy("", async (proxy) => {
    const proxyHost = new URL(proxy.url()).host;
    const fresh = await received(proxy, { "user-agent": "client-agent/1" });
    assert.equal(fresh["x-forwarded-for"], "127.0.0.1");
    assert.equal(fresh["x-forwarded-proto"], "http");
    assert.equal(fresh["x-forwarded-host"], proxyHost);
    assert.equal(fresh["user-agent"], "TestAgent/9.9");

    const chained = await received(proxy, { "x-forwarded-for": "203.0.113.7, 10.0.0.1" });
    assert.equal(chained["x-forwarded-for"], "203.0.113.7, 10.0.0.1, 127.0.0.1");
  }, { group: `httpClient: {agent: "TestAgent/9.9"}` });
});

Deno.test("e2e headers: the default User-Agent is LLMProxy/1.0", async () => {
  await withProxy("", async (proxy) => {
    assert.equal((await received(proxy, { "user-agent": "curl/8" }))["user-agent"], "LLMProxy/1.0");
  });
});

const REQUEST_HOP_BY_HOP = [
  "connection",
  "x-foo",
  "keep-alive",
  "te",
  "upgrade",
  "trailer",
  "proxy-authorization",
  "proxy-connection",
];

Deno.test("e2e headers: hop-by-hop request headers never reach the upstream", async () => {
  await withProxy("", async (proxy, mock) => {
    const port = Number(new URL(proxy.url()).port);
    const body = "{}";
    const response = await rawRequest(
      port,
      [
        "POST /v1/chat/completions HTTP/1.1",
        `Host: 127.0.0.1:${port}`,
        "Connection: close, x-foo",
        "X-Foo: 1",
        "Keep-Alive: timeout=5, max=100",
        "TE: trailers",
        "Upgrade: h2c",
        "Trailer: x-checksum",
        "Proxy-Authorization: Basic cHJveHk6c2VjcmV0",
        "Proxy-Connection: keep-alive",
        "X-End-To-End: kept",
        "Content-Type: application/json",
        `Content-Length: ${body.length}`,
      ].join("\n"),
      body,
    );
    assert.equal(response.status, 200, response.raw);
    const got = mock.requests[0]!.headers;
    assert.equal(got.get("x-end-to-end"), "kept");
    for (const name of REQUEST_HOP_BY_HOP) {
      // The upstream connection may carry its own keep-alive; only the client's value counts.
      const value = got.get(name);
      assert.ok(
        value === null || (name === "connection" && !value.includes("x-foo")),
        `upstream received ${name}: ${value}`,
      );
    }
  });
});

Deno.test("e2e headers: hop-by-hop response headers never reach the client", async () => {
  await withProxy("", async (proxy, mock) => {
    const hopHeaders = {
      "connection": "x-bar",
      "x-bar": "1",
      "keep-alive": "timeout=5",
      "proxy-authenticate": "Basic realm=up",
      "trailer": "x-checksum",
      "upgrade": "h2c",
      "x-end-to-end": "kept",
    };
    // The mock does send them, so the assertions below are not vacuous.
    mock.script({ headers: hopHeaders });
    const direct = await rawRequest(mock.port, "GET /echo HTTP/1.1\nHost: x\nConnection: close");
    assert.equal(direct.get("x-bar"), "1");
    assert.equal(direct.get("proxy-authenticate"), "Basic realm=up");
    assert.equal(direct.get("upgrade"), "h2c");

    mock.script({ headers: hopHeaders });
    const port = Number(new URL(proxy.url()).port);
    const response = await rawRequest(
      port,
      `GET /v1/models HTTP/1.1\nHost: 127.0.0.1:${port}\nConnection: close`,
    );
    assert.equal(response.status, 200, response.raw);
    assert.equal(response.get("x-end-to-end"), "kept");
    for (const name of ["x-bar", "keep-alive", "proxy-authenticate", "trailer", "upgrade"]) {
      assert.equal(response.get(name), undefined, `client received ${name}`);
    }
    assert.ok(!(response.get("connection") ?? "").includes("x-bar"));
  });
});

Deno.test("e2e headers: an absolute-form https:// target cannot make X-Forwarded-Proto say https", async () => {
  await withProxy("", async (proxy) => {
    const port = Number(new URL(proxy.url()).port);
    const response = await rawRequest(
      port,
      "POST https://spoofed.example/v1/chat/completions HTTP/1.1\nHost: spoofed.example\n" +
        "Content-Type: application/json\nContent-Length: 2\nConnection: close",
      "{}",
    );
    assert.equal(response.status, 200);
    const echoed = JSON.parse(new TextDecoder().decode(response.body)).headers;
    assert.equal(echoed["x-forwarded-proto"], "http");
  });
});
