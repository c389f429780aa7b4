/**
 * Error bodies carry no secrets and no internal addresses: an upstream that cannot be reached
 * (refused, DNS, TLS) or answers garbage is named by its config name and a cause from a fixed
 * vocabulary; its URL, the `?key=` it carries, its address, its port and the bytes it sent stay
 * in the log, where the logger redacts the secret. On both transports.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { configSecrets } from "../../src/config/secrets.ts";
import { startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { chat, freePort } from "../_helpers/raw_http.ts";

const KEY = "sk-query-key-8c1d2e3f";
const ENV: Record<string, string> = { KEY };
/** What the garbage upstream answers: an internal address and host name in its bytes. */
const GARBAGE = "GARBAGE 10.9.8.7 internal-db.corp\r\n\r\n";

/** A TCP server that answers every connection with {@linkcode GARBAGE} and closes it. */
function garbageServer(): { port: number; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      conn.write(new TextEncoder().encode(GARBAGE)).catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch { /* closed by the peer */ }
      });
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

function config(deadPort: number, garbagePort: number): string {
  const route = (name: string) => `{path: "/${name}/*", targetGroup: ${name}}`;
  const group = (name: string) =>
    `  - {name: ${name}, upstreams: [{name: ${name}}], httpClient: {retry: {attempts: 0}}}`;
  const names = ["dead", "garbage", "tls", "dns"];
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: dead,
       routing: [${names.map(route).join(", ")}]}
upstreams:
  - {name: dead, url: "http://127.0.0.1:${deadPort}/v1?key=\${KEY}"}
  - {name: garbage, url: "http://127.0.0.1:${garbagePort}/v1?key=\${KEY}"}
  - {name: tls, url: "https://127.0.0.1:${garbagePort}/v1?key=\${KEY}"}
  - {name: dns, url: "http://llm-internal.invalid:8123/v1?key=\${KEY}"}
upstreamGroups:
${names.map(group).join("\n")}
`;
}

for (const transport of ["http1", "fetch"] as const) {
  Deno.test(`error bodies (${transport}): an unreachable or broken upstream is named, never its URL, address or key`, async () => {
    const deadPort = freePort();
    const garbage = garbageServer();
    const loaded = parseConfig(config(deadPort, garbage.port), "test.yaml", (n) => ENV[n]);
    const logs: string[] = [];
    const app = await startApp(loaded, {
      log: createLogger({
        level: "debug",
        json: true,
        write: (line) => logs.push(line),
        secrets: configSecrets(loaded),
      }),
      handleSignals: false,
      env: (n) => ENV[n],
      transport,
    });
    const base = `http://127.0.0.1:${app.forwards.get("main")!.port}`;
    const expected: Record<string, string> = {
      dead: `cannot reach upstream "dead": connection refused`,
      garbage: `upstream "garbage" sent a malformed response`,
      // https to a plain-HTTP server: the handshake fails (a tls_error, not a connect error).
      tls: `TLS handshake with upstream "tls" failed: handshake failed`,
      dns: `cannot reach upstream "dns": DNS failure`,
    };
    const forbidden = [
      KEY,
      "key=",
      "127.0.0.1",
      String(deadPort),
      String(garbage.port),
      "10.9.8.7",
      "internal-db",
      "llm-internal",
      "8123",
      "GARBAGE",
      "os error",
    ];
    try {
      for (const [name, message] of Object.entries(expected)) {
        const response = await fetch(`${base}/${name}/chat/completions`, {
          method: "POST",
          body: chat(),
        });
        const text = await response.text();
        assert.equal(response.status, 502, `${name}: ${text}`);
        for (const secret of forbidden) {
          assert.ok(!text.includes(secret), `${name}: the body leaks ${secret}: ${text}`);
        }
        assert.equal(JSON.parse(text).error.message, message, text);
      }
    } finally {
      await app.stop();
      garbage.close();
    }
    // The details are the operator's: in the log, with the key redacted.
    for (const line of logs) assert.ok(!line.includes(KEY), `a log line leaks the key: ${line}`);
    // A TLS failure has its own line (logged once per upstream, with Deno's reason).
    const failed = logs.filter((l) =>
      l.includes("attempt failed") || l.includes("TLS handshake with upstream")
    );
    assert.equal(failed.length, 4, failed.join(""));
    assert.ok(failed.some((l) => /connection refused/i.test(l) && l.includes('"error":')));
    // The bytes the garbage upstream sent (http1 quotes them; fetch names the URL).
    assert.ok(
      failed.some((l) => l.includes("GARBAGE 10.9.8.7") || l.includes("[REDACTED]")),
      failed.join(""),
    );
  });
}
