import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { configSecrets, redactedConfig } from "../../src/config/secrets.ts";
import { RequestHeaderPlan } from "../../src/upstream/headers.ts";

function secretsOf(text: string, env: Record<string, string> = {}): string[] {
  const loaded = parseConfig(
    text,
    "c.yaml",
    (name) => Object.hasOwn(env, name) ? env[name] : undefined,
  );
  return [...configSecrets(loaded)].sort();
}

const SERVER = `httpServer:
  forwards: [{name: f1, port: 3000, defaultGroup: g1}]
`;
const GROUP = `upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
`;

Deno.test("no credentials, no interpolation: no secrets", () => {
  assert.deepEqual(
    secretsOf(SERVER + `upstreams:\n  - {name: u1, url: "https://a.example"}\n` + GROUP),
    [],
  );
});

Deno.test("bearer tokens are secrets, whatever their length", () => {
  const text = SERVER + `upstreams:
  - {name: u1, url: "https://a.example", auth: {type: bearer, token: sk-long-token-1}}
  - {name: u2, url: "https://b.example", auth: {type: bearer, token: tiny}}
  - {name: u3, url: "https://c.example", auth: {type: bearer, token: ""}}
` + GROUP;
  assert.deepEqual(secretsOf(text), ["sk-long-token-1", "tiny"]);
});

Deno.test("basic auth: the password and the base64 of user:pass, not the username", () => {
  const text = SERVER + `upstreams:
  - {name: u1, url: "https://a.example", auth: {type: basic, username: alice, password: pw}}
` + GROUP;
  assert.deepEqual(secretsOf(text), [btoa("alice:pw"), "pw"].sort());
  assert.equal(btoa("alice:pw"), "YWxpY2U6cHc=");
});

Deno.test("basic auth with an empty password still hides user: in base64", () => {
  const text = SERVER + `upstreams:
  - {name: u1, url: "https://a.example", auth: {type: basic, username: bob, password: ""}}
` + GROUP;
  assert.deepEqual(secretsOf(text), [btoa("bob:")]);
});

Deno.test("the admin token is a secret; an empty one is not", () => {
  const upstreams = `upstreams:\n  - {name: u1, url: "https://a.example"}\n`;
  const withToken = SERVER + `  admin: {port: 9000, token: adm1n}\n` + upstreams + GROUP;
  assert.deepEqual(secretsOf(withToken), ["adm1n"]);
  const empty = SERVER + `  admin: {port: 9000, token: ""}\n` + upstreams + GROUP;
  assert.deepEqual(secretsOf(empty), []);
});

Deno.test("the outbound proxy password, as written and decoded", () => {
  const text = SERVER + `upstreams:\n  - {name: u1, url: "https://a.example"}\n` + GROUP +
    `    httpClient: {proxy: {url: "http://user:p%40ss@proxy.internal:8080"}}\n`;
  assert.deepEqual(secretsOf(text), ["p%40ss", "p@ss"].sort());
});

Deno.test("a proxy URL without a password adds nothing (the username is not a secret)", () => {
  const text = SERVER + `upstreams:\n  - {name: u1, url: "https://a.example"}\n` + GROUP +
    `    httpClient: {proxy: {url: "http://user@proxy.internal:8080"}}\n`;
  assert.deepEqual(secretsOf(text), []);
});

Deno.test("interpolated values of 8+ characters are secrets; shorter ones are not", () => {
  const text = `httpServer:
  forwards: [{name: "\${FWD}", port: 3000, defaultGroup: g1}]
upstreams:
  - name: u1
    url: "https://\${HOST}"
    headers:
      - {op: insert, key: X-Org, value: "\${ORG}"}
      - {op: insert, key: X-Seven, value: "\${SEVEN}"}
      - {op: insert, key: X-Eight, value: "\${EIGHT}"}
      - {op: insert, key: X-Default, value: "\${UNSET:-default-value}"}
      - {op: insert, key: X-Empty, value: "\${EMPTY:-}"}
` + GROUP;
  const env = {
    FWD: "f1",
    HOST: "api.internal.example",
    ORG: "org-1234567",
    SEVEN: "1234567",
    EIGHT: "12345678",
  };
  assert.deepEqual(
    secretsOf(text, env),
    ["12345678", "api.internal.example", "default-value", "org-1234567"],
  );
});

Deno.test("everything together, deduplicated", () => {
  const text = `httpServer:
  forwards: [{name: f1, port: 3000, defaultGroup: g1}]
  admin: {port: 9000, token: "\${ADMIN_TOKEN}"}
upstreams:
  - {name: u1, url: "https://a.example", auth: {type: bearer, token: "\${KEY}"}}
  - {name: u2, url: "https://b.example", auth: {type: bearer, token: "\${KEY}"}}
  - {name: u3, url: "https://c.example", auth: {type: basic, username: u, password: "\${PW}"}}
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
    httpClient: {proxy: {url: "socks5://x:proxypass@proxy:1080"}}
`;
  const env = { ADMIN_TOKEN: "admin-secret", KEY: "sk-shared-key", PW: "pw" };
  assert.deepEqual(
    secretsOf(text, env),
    ["admin-secret", "sk-shared-key", "pw", btoa("u:pw"), "proxypass"].sort(),
  );
});

Deno.test("configSecrets() includes the values of credential-like header ops", () => {
  const loaded = parseConfig(
    `httpServer:
  forwards: [{name: f, port: 0, defaultGroup: g}]
upstreams:
  - name: azure
    url: "https://example.openai.azure.com/openai"
    headers:
      - {op: replace, key: api-key, value: "azure-key-123456"}
      - {op: insert, key: X-Team, value: "platform-team"}
upstreamGroups:
  - {name: g, upstreams: [{name: azure}]}
`,
    "t.yaml",
    () => undefined,
  );
  const secrets = configSecrets(loaded);
  assert.ok(secrets.has("azure-key-123456"));
  assert.ok(!secrets.has("platform-team"));
  const shown = JSON.stringify(redactedConfig(loaded));
  assert.ok(!shown.includes("azure-key-123456"));
  assert.ok(shown.includes("platform-team"));
});

Deno.test("basic auth: non-ASCII credentials give the base64 of their UTF-8, as sent", () => {
  const text = SERVER + `upstreams:
  - {name: u1, url: "https://a.example", auth: {type: basic, username: jürgen, password: пароль}}
` + GROUP;
  const header = new RequestHeaderPlan({
    auth: { type: "basic", username: "jürgen", password: "пароль" },
    userAgent: "t",
    ops: [],
  }).build(new Headers(), { peerIp: "127.0.0.1", proto: "http" })["authorization"]!;
  assert.deepEqual(secretsOf(text), [header.slice("Basic ".length), "пароль"].sort());
});
