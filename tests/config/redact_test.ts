import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { REDACTED, redactedConfig } from "../../src/config/secrets.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

function redact(text: string, env: Record<string, string> = {}): Json {
  const loaded = parseConfig(
    text,
    "c.yaml",
    (name) => Object.hasOwn(env, name) ? env[name] : undefined,
  );
  return redactedConfig(loaded) as Json;
}

/** Fails when any of `secrets` occurs anywhere in the JSON form of `value`. */
function assertNoSecrets(value: unknown, secrets: readonly string[]): void {
  const text = JSON.stringify(value);
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `secret ${JSON.stringify(secret)} leaked: ${text}`);
    // Also not URL-encoded or base64 (basic auth).
    assert.ok(!text.includes(encodeURIComponent(secret)), `encoded ${secret} leaked`);
  }
}

const ALL = `httpServer:
  forwards:
    - name: main
      port: 3000
      defaultGroup: g1
  admin: {port: 9000, address: 127.0.0.1, token: "\${ADMIN_TOKEN}"}
upstreams:
  - name: bearer_env
    url: "https://api.openai.com/v1/chat/completions"
    auth: {type: bearer, token: "\${OPENAI_KEY}"}
  - name: bearer_literal
    url: "https://b.example/v1"
    auth: {type: bearer, token: sk-literal-bearer-123}
  - name: basic_literal
    url: "https://c.example/v1"
    auth: {type: basic, username: alice, password: hunter2-literal}
  - name: basic_env
    url: "https://d.example/v1"
    auth: {type: basic, username: bob, password: "\${BASIC_PW}"}
  - name: headers
    url: "https://e.example/v1"
    headers:
      - {op: insert, key: X-Org, value: "\${ORG_ID}"}
      - {op: insert, key: X-Plain, value: plain-value}
upstreamGroups:
  - name: g1
    upstreams: [{name: bearer_env}, {name: bearer_literal}, {name: basic_literal}, {name: basic_env}, {name: headers}]
    httpClient:
      proxy: {url: "http://proxyuser:\${PROXY_PW}@proxy.internal:8080"}
  - name: g2
    upstreams: [{name: bearer_env}]
    httpClient:
      proxy: {url: "socks5://socksuser:socks-literal-pw@socks.internal:1080"}
`;
const ENV = {
  ADMIN_TOKEN: "admin-token-from-env",
  OPENAI_KEY: "sk-openai-from-env-0000",
  BASIC_PW: "basic-pw-from-env",
  ORG_ID: "org-id-from-env",
  PROXY_PW: "proxy-pw-from-env",
};
const SECRETS = [
  ...Object.values(ENV),
  "sk-literal-bearer-123",
  "hunter2-literal",
  "socks-literal-pw",
  btoa("alice:hunter2-literal"),
  btoa("bob:basic-pw-from-env"),
];

Deno.test("redactedConfig: no secret from env or literal appears anywhere", () => {
  assertNoSecrets(redact(ALL, ENV), SECRETS);
});

Deno.test("redactedConfig: credential fields become [REDACTED], the rest stays readable", () => {
  const config = redact(ALL, ENV);
  assert.equal(config.httpServer.admin.token, REDACTED);
  assert.equal(config.httpServer.admin.port, 9000);
  assert.equal(config.httpServer.admin.address, "127.0.0.1");
  const up = Object.fromEntries(config.upstreams.map((u: { name: string }) => [u.name, u]));
  assert.deepEqual(up.bearer_env.auth, { type: "bearer", token: REDACTED });
  assert.deepEqual(up.bearer_literal.auth, { type: "bearer", token: REDACTED });
  // The username is not a secret; the password is.
  assert.deepEqual(up.basic_literal.auth, {
    type: "basic",
    username: "alice",
    password: REDACTED,
  });
  assert.equal(up.basic_env.auth.password, REDACTED);
  assert.equal(up.bearer_env.url, "https://api.openai.com/v1/chat/completions");
  // A header value from ${VAR} is redacted; a literal one is shown.
  assert.deepEqual(up.headers.headers, [
    { op: "insert", key: "X-Org", value: REDACTED },
    { op: "insert", key: "X-Plain", value: "plain-value" },
  ]);
  // Names and structure stay.
  assert.equal(config.httpServer.forwards[0].name, "main");
  assert.equal(config.upstreamGroups[0].name, "g1");
  assert.equal(config.upstreamGroups[0].upstreams.length, 5);
});

Deno.test("redactedConfig: proxy URLs lose their credentials but keep host and port", () => {
  const config = redact(ALL, ENV);
  const http = new URL(config.upstreamGroups[0].httpClient.proxy.url);
  assert.equal(http.password, "");
  assert.notEqual(http.username, "proxyuser");
  assert.equal(http.host, "proxy.internal:8080");
  const socks = config.upstreamGroups[1].httpClient.proxy.url as string;
  assert.ok(!socks.includes("socks-literal-pw"), socks);
  assert.ok(socks.includes("socks.internal:1080"), socks);
});

Deno.test("redactedConfig: credentials in an upstream URL are refused at load", () => {
  assert.throws(
    () =>
      redact(`httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - {name: u, url: "https://user:url-pass-secret@api.example/v1"}
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`),
    (error: Error) => {
      assert.match(error.message, /credentials/);
      assert.ok(!error.message.includes("url-pass-secret"), error.message);
      return true;
    },
  );
});

Deno.test("redactedConfig: an interpolated value inside a larger string hides the string", () => {
  const config = redact(
    `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - name: u
    url: "https://api.example/v1?key=\${QUERY_KEY}"
    headers: [{op: replace, key: X-Key, value: "Key \${HEADER_KEY} tail"}]
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`,
    { QUERY_KEY: "query-key-secret", HEADER_KEY: "header-key-secret" },
  );
  assertNoSecrets(config, ["query-key-secret", "header-key-secret"]);
  assert.equal(config.upstreams[0].url, REDACTED);
  assert.equal(config.upstreams[0].headers[0].value, REDACTED);
});

Deno.test("redactedConfig: a proxy URL with credentials and a ${VAR} elsewhere leaks neither", () => {
  const config = redact(
    `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - {name: u, url: "https://api.example/v1"}
upstreamGroups:
  - name: g
    upstreams: [{name: u}]
    httpClient:
      proxy: {url: "http://user:pw-literal-xyz@\${PROXY_HOST}:8080"}
`,
    { PROXY_HOST: "proxy-host-from-env.internal" },
  );
  assertNoSecrets(config, ["pw-literal-xyz", "proxy-host-from-env.internal"]);
});

Deno.test("redactedConfig: empty credentials stay empty; nothing else is touched", () => {
  const config = redact(`httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
  admin: {port: 9000, token: ""}
upstreams:
  - {name: u, url: "https://api.example/v1", auth: {type: bearer, token: ""}}
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`);
  assert.equal(config.httpServer.admin.token, "");
  assert.equal(config.upstreams[0].auth.token, "");
  assert.equal(config.upstreams[0].url, "https://api.example/v1");
});

Deno.test("redactedConfig: effective values (defaults, durations in ms) are shown", () => {
  const config = redact(`httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - {name: u, url: "https://api.example/v1", breaker: {cooldown: 5}}
upstreamGroups:
  - {name: g, upstreams: [{name: u}], httpClient: {timeout: {firstByte: "250ms"}}}
`);
  assert.equal(config.upstreams[0].breaker.cooldown, 5000);
  assert.equal(config.upstreamGroups[0].httpClient.timeout.firstByte, 250);
  assert.equal(config.upstreamGroups[0].balance.strategy, "roundrobin");
  assert.equal(typeof config.httpServer.shutdownTimeout, "number");
});

Deno.test("redactedConfig: does not modify the loaded config", () => {
  const loaded = parseConfig(ALL, "c.yaml", (name) => (ENV as Record<string, string>)[name]);
  const before = JSON.stringify(loaded.config);
  redactedConfig(loaded);
  assert.equal(JSON.stringify(loaded.config), before);
  assert.equal(loaded.config.httpServer.admin?.token, ENV.ADMIN_TOKEN);
});
