/**
 * Secrets never leak: credentials configured as literals and through ${VAR} (bearer token,
 * basic password, admin token, outbound proxy credentials) appear in no log line (debug level,
 * JSON and text), no admin response and no error body, whatever the traffic.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { configSecrets } from "../../src/config/secrets.ts";
import { type RunningApp, startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { chat, delay, freePort } from "../_helpers/raw_http.ts";

const ENV: Record<string, string> = {
  OPENAI_KEY: "sk-env-bearer-7f3a9c1e55",
  BASIC_PW: "env-basic-pw-91b2c3",
  ADMIN_TOKEN: "env-admin-token-4d5e6f",
  PROXY_PW: "env-proxy-pw-a1b2c3",
};
const LITERAL = {
  bearer: "sk-literal-bearer-0c0ffee",
  basic: "literal-basic-pw-beef42",
  proxy: "literal-proxy-pw-cafe77",
};
/** What the client sends as its own Authorization: never logged either. */
const CLIENT_KEY = "sk-client-own-key-5150";

/** Every form a secret could take on the wire or in text. */
function forms(): string[] {
  const raw = [...Object.values(ENV), ...Object.values(LITERAL), CLIENT_KEY];
  return [
    ...raw,
    ...raw.map((s) => encodeURIComponent(s)).filter((s) => !raw.includes(s)),
    btoa(`alice:${LITERAL.basic}`),
    btoa(`bob:${ENV.BASIC_PW}`),
    btoa(`puser:${ENV.PROXY_PW}`),
    btoa(`suser:${LITERAL.proxy}`),
  ];
}

function config(mock: MockUpstream, deadProxyPort: number, refusingProxyPort: number): string {
  const chatUrl = `${mock.url}/v1/chat/completions`;
  return `httpServer:
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
      routing:
        - {path: "/basic/*", targetGroup: basic}
        - {path: "/proxied/*", targetGroup: proxied}
        - {path: "/socks/*", targetGroup: socks}
        - {path: "/refused/*", targetGroup: refused}
        - {path: "/slow/*", targetGroup: slow}
  admin: {port: 0, token: "\${ADMIN_TOKEN}"}
upstreams:
  - {name: bearer_env, url: "${chatUrl}", auth: {type: bearer, token: "\${OPENAI_KEY}"},
     breaker: {minRequests: 2, threshold: 0.5, cooldown: 60}}
  - {name: bearer_literal, url: "${chatUrl}", auth: {type: bearer, token: "${LITERAL.bearer}"}}
  - {name: basic_literal, url: "${chatUrl}",
     auth: {type: basic, username: alice, password: "${LITERAL.basic}"}}
  - {name: basic_env, url: "${chatUrl}", auth: {type: basic, username: bob, password: "\${BASIC_PW}"}}
  - {name: via_proxy, url: "${chatUrl}", auth: {type: bearer, token: "\${OPENAI_KEY}"}}
  - {name: via_socks, url: "${chatUrl}", auth: {type: bearer, token: "${LITERAL.bearer}"}}
  - {name: via_refusing, url: "${chatUrl}"}
  - {name: slow, url: "${chatUrl}", auth: {type: bearer, token: "\${OPENAI_KEY}"}}
upstreamGroups:
  - name: g
    upstreams: [{name: bearer_env}, {name: bearer_literal}]
    httpClient: {retry: {attempts: 1, initial: 1}}
  - name: basic
    upstreams: [{name: basic_literal}, {name: basic_env}]
  - name: proxied
    upstreams: [{name: via_proxy}]
    httpClient:
      retry: {attempts: 1, initial: 1}
      proxy: {url: "http://puser:\${PROXY_PW}@127.0.0.1:${deadProxyPort}"}
  - name: socks
    upstreams: [{name: via_socks}]
    httpClient:
      retry: {attempts: 0}
      proxy: {url: "socks5://suser:${LITERAL.proxy}@127.0.0.1:${deadProxyPort}"}
  - name: refused
    upstreams: [{name: via_refusing}]
    httpClient:
      retry: {attempts: 0}
      proxy: {url: "http://suser:${LITERAL.proxy}@127.0.0.1:${refusingProxyPort}"}
  - name: slow
    upstreams: [{name: slow}]
    httpClient: {retry: {attempts: 0}, timeout: {firstByte: "100ms"}}
`;
}

interface Running {
  app: RunningApp;
  logs: string[];
  url: string;
  admin: string;
}

/** Starts the proxy as main.ts does (the logger knows the config's secrets) unless `raw`. */
async function start(yaml: string, json: boolean, raw: boolean): Promise<Running> {
  const loaded = parseConfig(yaml, "test.yaml", (name) => ENV[name]);
  const logs: string[] = [];
  const log = createLogger({
    level: "debug",
    json,
    write: (line) => logs.push(line),
    ...(raw ? {} : { secrets: configSecrets(loaded) }),
  });
  const app = await startApp(loaded, {
    log,
    handleSignals: false,
    env: (name) => ENV[name],
    reload: () => Promise.resolve(parseConfig(yaml, "test.yaml", (name) => ENV[name])),
  });
  return {
    app,
    logs,
    url: `http://127.0.0.1:${app.forwards.get("main")!.port}`,
    admin: `http://127.0.0.1:${app.admin!.port}`,
  };
}

/** Drives every kind of traffic; returns every response body and header block seen. */
async function traffic(r: Running, mock: MockUpstream): Promise<string[]> {
  const seen: string[] = [];
  const record = async (response: Response) => {
    seen.push(`${response.status} ${JSON.stringify([...response.headers])}`);
    seen.push(await response.text().catch((e) => `body error: ${e}`));
    return response.status;
  };
  const post = (path: string, headers: Record<string, string> = {}, body = chat()) =>
    fetch(`${r.url}${path}`, {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${CLIENT_KEY}`, ...headers },
    }).then(record);

  // Successes, JSON and streamed.
  assert.equal(await post("/v1/chat/completions"), 200);
  assert.equal(await post("/v1/chat/completions", {}, chat(true)), 200);
  assert.equal(await post("/basic/x"), 200);
  assert.equal(await post("/basic/x"), 200);
  // Upstream failures: 500 then retry, 401 passed through, a broken stream, a bad body.
  mock.script({ status: 500 });
  await post("/v1/chat/completions");
  await post("/v1/chat/completions", { "x-mock-status": "401" });
  await post("/v1/chat/completions", { "x-mock-status": "503" });
  await post("/v1/chat/completions", { "x-mock-cut-after": "1" }, chat(true));
  await post("/v1/chat/completions", {}, "{not json");
  // Until the breaker of bearer_env opens and both are out.
  for (let i = 0; i < 4; i++) await post("/v1/chat/completions", { "x-mock-status": "500" });
  // Outbound proxies: unreachable (http and socks5), and one that answers 407.
  assert.notEqual(await post("/proxied/x"), 200);
  assert.notEqual(await post("/socks/x"), 200);
  assert.notEqual(await post("/refused/x"), 200);
  // A first-byte timeout.
  assert.equal(await post("/slow/x", { "x-mock-hang-ms": "1000" }), 504);
  // No route / odd requests.
  await fetch(`${r.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${CLIENT_KEY}`, "content-length": "99999999999" },
    body: "x",
  }).then(record).catch(() => {});

  // Admin: open endpoints, protected ones with and without the token, a reload.
  for (const path of ["/health", "/ping", "/ready", "/metrics", "/nope"]) {
    await fetch(`${r.admin}${path}`).then(record);
  }
  for (const path of ["/upstreams", "/config"]) {
    await fetch(`${r.admin}${path}`).then(record);
    await fetch(`${r.admin}${path}`, { headers: { authorization: "Bearer wrong" } }).then(record);
    assert.equal(
      await fetch(`${r.admin}${path}`, { headers: { authorization: `Bearer ${ENV.ADMIN_TOKEN}` } })
        .then(record),
      200,
    );
  }
  assert.equal(
    await fetch(`${r.admin}/reload`, {
      method: "POST",
      headers: { authorization: `Bearer ${ENV.ADMIN_TOKEN}` },
    }).then(record),
    200,
  );
  await delay(50);
  return seen;
}

/** A server that answers every request with 407, like a proxy rejecting credentials. */
function refusingProxy(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("proxy authentication required", { status: 407 }),
  );
}

function assertClean(what: string, texts: readonly string[]): void {
  for (const text of texts) {
    for (const secret of forms()) {
      assert.ok(!text.includes(secret), `${what} leaks ${JSON.stringify(secret)}:\n${text}`);
    }
  }
}

for (const json of [true, false]) {
  Deno.test(`secrets: no log line (${json ? "JSON" : "text"}, debug), admin response or error body leaks a secret`, async () => {
    const mock = await startMockUpstream();
    const refusing = refusingProxy();
    const r = await start(config(mock, freePort(), refusing.addr.port), json, false);
    try {
      const seen = await traffic(r, mock);
      await r.app.stop();
      assert.ok(r.logs.length > 20, `enough logging to mean something: ${r.logs.length}`);
      assertClean("log", r.logs);
      assertClean("response", seen);
      // The traffic really used the credentials.
      const sent = mock.requests.map((q) => q.headers.get("authorization") ?? "");
      assert.ok(sent.includes(`Bearer ${ENV.OPENAI_KEY}`));
      assert.ok(sent.includes(`Bearer ${LITERAL.bearer}`));
      assert.ok(sent.includes(`Basic ${btoa(`alice:${LITERAL.basic}`)}`));
      assert.ok(sent.includes(`Basic ${btoa(`bob:${ENV.BASIC_PW}`)}`));
      assert.ok(!sent.includes(`Bearer ${CLIENT_KEY}`), "the client's key never travels");
    } finally {
      await r.app.stop();
      await refusing.shutdown();
      await mock.close();
    }
  });
}

Deno.test("secrets: nothing is logged that only the logger's redaction hides", async () => {
  // Defence in depth: with a logger that knows no secrets, the lines must still be clean,
  // i.e. no code path writes a credential and relies on redaction to hide it.
  const mock = await startMockUpstream();
  const refusing = refusingProxy();
  const r = await start(config(mock, freePort(), refusing.addr.port), true, true);
  try {
    await traffic(r, mock);
    await r.app.stop();
    assertClean("unredacted log", r.logs);
  } finally {
    await r.app.stop();
    await refusing.shutdown();
    await mock.close();
  }
});
