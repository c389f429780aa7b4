import assert from "node:assert/strict";
import { ConfigError, loadConfigFile, parseConfig } from "../../src/config/load.ts";
import { configSecrets, REDACTED, redactedConfig } from "../../src/config/secrets.ts";
import { fixturePath, pem, TLS_DIR } from "../_helpers/tls.ts";

/** A config with `group` under the group's httpClient and `forward` in the forward. */
function yaml(options: { client?: string; forward?: string; admin?: string } = {}): string {
  return `httpServer:
  forwards:
    - name: main
      port: 0
      defaultGroup: g
${options.forward ? `      ${options.forward}\n` : ""}  admin: {port: 0${
    options.admin ? `, ${options.admin}` : ""
  }}
upstreams:
  - {name: u, url: "https://127.0.0.1:1/"}
upstreamGroups:
  - name: g
    upstreams: [{name: u}]
${options.client ? `    httpClient:\n      ${options.client}\n` : ""}`;
}

function errors(text: string): string[] {
  try {
    parseConfig(text, "test.yaml", () => undefined, { baseDir: TLS_DIR });
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  return assert.fail("expected a ConfigError");
}

Deno.test("config tls: file paths (relative to the config file) and inline PEM load as PEM text", async () => {
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-tls-" });
  try {
    await Deno.copyFile(fixturePath("ca.pem"), `${dir}/ca.pem`);
    const inlineKey = pem("client.key").trimEnd().split("\n").map((l) => `          ${l}`)
      .join("\n");
    await Deno.writeTextFile(
      `${dir}/llmproxy.yaml`,
      yaml({
        client: `tls:
        ca: ca.pem
        cert: ${fixturePath("client.pem")}
        key: |
${inlineKey}`,
        forward: `tls: {cert: "${fixturePath("server.pem")}", key: "${fixturePath("server.key")}"}`,
      }),
    );
    const loaded = await loadConfigFile(`${dir}/llmproxy.yaml`, () => undefined);
    const tls = loaded.config.upstreamGroups[0]!.httpClient.tls!;
    assert.equal(tls.ca, pem("ca.pem"));
    assert.equal(tls.cert, pem("client.pem"));
    assert.equal(tls.key!.trim(), pem("client.key").trim());
    assert.equal(loaded.config.httpServer.forwards[0]!.tls!.key, pem("server.key"));
    // Private keys are secrets: never shown by /config, redacted from logs.
    const secrets = configSecrets(loaded);
    assert.ok(secrets.has(tls.key!));
    assert.ok(secrets.has(pem("server.key")));
    const shown = JSON.stringify(redactedConfig(loaded));
    assert.ok(!shown.includes("PRIVATE KEY"), shown);
    assert.ok(shown.includes(JSON.stringify(REDACTED)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config tls: a missing file, a file that is not PEM, the wrong PEM and a mismatched key are errors at the field's position", () => {
  const lines = errors(yaml({
    client: `tls: {ca: missing.pem, cert: make.sh, key: client.pem}`,
    forward: `tls: {cert: server.pem, key: client.key}`,
  }));
  const text = lines.join("\n");
  assert.match(text, /test\.yaml:6:\d+ httpServer\.forwards\.0\.tls: .*key does not match/);
  assert.match(
    text,
    /test\.yaml:14:\d+ upstreamGroups\.0\.httpClient\.tls\.ca: group "g": file "missing\.pem" not found/,
  );
  assert.match(text, /tls\.cert: group "g": file "make\.sh" is not PEM/);
  assert.match(text, /tls\.key: group "g": file "client\.pem" holds no private key/);
  const body = pem("client.pem").split("\n")[1]!;
  assert.ok(!text.includes(body), "never the PEM contents");
});

Deno.test("config tls: cert without key, and serverName (Deno cannot set it), are rejected with reasons", () => {
  const text = errors(yaml({
    client: `tls: {cert: client.pem, serverName: api.internal}`,
    admin: `tls: {cert: server.pem}`,
  })).join("\n");
  assert.match(text, /tls\.key: group "g": mutual TLS needs both cert and key/);
  assert.match(text, /tls\.serverName: group "g": is not supported: Deno's HTTP client/);
  assert.match(text, /httpServer\.admin\.tls\.key: is required/);
});
