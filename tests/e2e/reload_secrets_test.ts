/**
 * A reload never prints the new config's `${VAR}` values: a rejected config's errors (the log
 * line and the `POST /reload` answer) show the reference, not the value, even though the
 * logger does not know the new values yet; and the secrets a reload brings in are redacted
 * from the log before the new config serves.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { configSecrets } from "../../src/config/secrets.ts";
import { startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { chat, freePort } from "../_helpers/raw_http.ts";

const TOKEN = "reload-secrets-admin-1";
const ENV: Record<string, string> = {
  BAD_URL: "not-a-url-sk-reload-secret-42",
  BAD_TIMEOUT: "tmo-secret-value-9f",
  NAME: "u-secret-name-31",
  NEW_KEY: "sk-new-key-after-reload-5d",
};
const VALUES = Object.values(ENV);

function yaml(mock: MockUpstream, upstreams = ""): string {
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g,
       routing: [{path: "/new/*", targetGroup: n}]}
  admin: {port: 0, token: "${TOKEN}"}
upstreams:
  - {name: u1, url: "${mock.url}/v1/chat/completions"}
${upstreams}
upstreamGroups:
  - {name: g, upstreams: [{name: u1}]}
  - {name: n, upstreams: [{name: u1}], httpClient: {retry: {attempts: 0}}}
`;
}

/** Invalid: each bad field is a `${VAR}` whose value the schema's messages would quote. */
function invalid(mock: MockUpstream): string {
  return yaml(
    mock,
    `  - {name: "\${NAME}", url: "\${BAD_URL}"}
  - {name: u3, url: "${mock.url}/v1", breaker: {cooldown: "\${BAD_TIMEOUT}"}}`,
  );
}

Deno.test("reload secrets: a rejected config's errors show ${VAR} references, never their values", async () => {
  const mock = await startMockUpstream();
  const logs: string[] = [];
  let text = yaml(mock);
  const env = (name: string) => ENV[name];
  const loaded = parseConfig(text, "test.yaml", env);
  // As main.ts: the live set grows with each *loaded* config; a rejected one adds nothing.
  const secrets = configSecrets(loaded);
  const app = await startApp(loaded, {
    log: createLogger({ level: "debug", json: true, write: (l) => logs.push(l), secrets }),
    handleSignals: false,
    env,
    reload: () => {
      const next = parseConfig(text, "test.yaml", env);
      for (const s of configSecrets(next)) secrets.add(s);
      return Promise.resolve(next);
    },
  });
  try {
    text = invalid(mock);
    const result = await app.reload();
    assert.equal(result.ok, false);
    const response = await fetch(`http://127.0.0.1:${app.admin!.port}/reload`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const answer = await response.text();
    assert.equal(response.status, 400, answer);
    for (const shown of [...result.errors, answer, ...logs]) {
      for (const value of VALUES) assert.ok(!shown.includes(value), `leaks ${value}: ${shown}`);
    }
    // The operator still learns which field and which reference.
    const errors = result.errors.join("\n");
    assert.match(errors, /upstream "\$\{NAME\}": invalid URL "\$\{BAD_URL\}"/);
    assert.match(errors, /invalid duration "\$\{BAD_TIMEOUT\}"/);
  } finally {
    await app.stop();
    await mock.close();
  }
});

for (const transport of ["http1", "fetch"] as const) {
  Deno.test(`reload secrets (${transport}): a secret a reload brings in reaches neither the log nor an error body`, async () => {
    const mock = await startMockUpstream();
    const logs: string[] = [];
    let text = yaml(mock);
    const env = (name: string) => ENV[name];
    const loaded = parseConfig(text, "test.yaml", env);
    const secrets = configSecrets(loaded);
    const app = await startApp(loaded, {
      log: createLogger({ level: "debug", json: true, write: (l) => logs.push(l), secrets }),
      handleSignals: false,
      env,
      transport,
      reload: () => {
        const next = parseConfig(text, "test.yaml", env);
        for (const s of configSecrets(next)) secrets.add(s);
        return Promise.resolve(next);
      },
    });
    try {
      // An upstream that cannot be reached, its key in the URL.
      const dead = freePort();
      text = yaml(mock, `  - {name: keyed, url: "http://127.0.0.1:${dead}/v1?key=\${NEW_KEY}"}`)
        .replace("upstreams: [{name: u1}], httpClient", "upstreams: [{name: keyed}], httpClient");
      assert.deepEqual(await app.reload(), { ok: true, errors: [] });
      const port = app.forwards.get("main")!.port;
      const response = await fetch(`http://127.0.0.1:${port}/new/chat/completions`, {
        method: "POST",
        body: chat(),
      });
      const body = await response.text();
      assert.equal(response.status, 502, body);
      assert.ok(!body.includes(ENV.NEW_KEY!), body);
      assert.ok(!body.includes(String(dead)), body);
      await app.stop();
      assert.ok(logs.some((l) => l.includes("attempt failed")));
      for (const line of logs) assert.ok(!line.includes(ENV.NEW_KEY!), line);
    } finally {
      await app.stop();
      await mock.close();
    }
  });
}
