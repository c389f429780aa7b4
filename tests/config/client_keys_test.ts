import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import {
  BASE_CONFIG as BASE,
  errorsWith as errors,
  loadWith as load,
} from "../_helpers/config_base.ts";
import { configSecrets, redactedConfig } from "../../src/config/secrets.ts";
import { formatDigest } from "../../src/keys/digest.ts";

const DIGEST = formatDigest("sk-team-b-0123456789");

Deno.test("clientKeys: a full entry loads with its defaults and units", () => {
  const { config, warnings } = load(
    `clientKeys:
  - name: team_a
    key: "\${TEAM_A_KEY}"
    groups: [g1]
    models: ["gpt-4o*"]
    ratelimit: {perSecond: 5, burst: 10}
    tokens: {perMinute: 100000}
    budget: {tokens: 5000000, period: "30d"}
  - name: team_b
    key: "${DIGEST}"
state:
  path: "/tmp/llmproxy-state.db"
`,
    { TEAM_A_KEY: "sk-team-a-0123456789" },
  );
  assert.deepEqual(warnings, []);
  const [a, b] = config.clientKeys;
  assert.equal(a!.key, "sk-team-a-0123456789");
  assert.deepEqual(a!.budget, { tokens: 5_000_000, period: 30 * 86_400_000 });
  assert.deepEqual(a!.tokens, { perMinute: 100_000 });
  assert.equal(b!.key, DIGEST);
  assert.equal(b!.groups, undefined);
  assert.equal(config.state.path, "/tmp/llmproxy-state.db");
  assert.equal(config.httpServer.forwards[0]!.clientAuth, undefined);
});

Deno.test("clientKeys: bad digests, duplicate names and keys, unknown groups are errors", () => {
  const lines = errors(`clientKeys:
  - name: a
    key: "sha256:abc"
  - name: a
    key: "${DIGEST}"
  - name: c
    key: "sk-team-b-0123456789"
    groups: [g1, nope]
  - name: d
    key: " spaced "
`);
  assert.deepEqual(lines, [
    'c.yaml:15:10 clientKeys.0.key: client key "a": a digest must be "sha256:" and 64 hex digits (see llmproxy --hash-key)',
    'c.yaml:16:11 clientKeys.1.name: client key "a": duplicate client key name "a" (also at index 0)',
    'c.yaml:19:10 clientKeys.2.key: client key "c": same key as client key "a"',
    'c.yaml:20:18 clientKeys.2.groups.1: client key "c": unknown group "nope" (groups: g1)',
    'c.yaml:22:10 clientKeys.3.key: client key "d": has leading or trailing whitespace: a presented key is trimmed, so it could never match',
  ]);
});

Deno.test("clientKeys: unknown fields and a bad clientAuth are errors", () => {
  const lines = errors(`clientKeys:
  - name: a
    key: "k-0123456789"
    budgte: {tokens: 1, period: 60}
`);
  assert.deepEqual(lines, [
    'c.yaml:16:5 clientKeys.0.budgte: unknown key "budgte" (did you mean "budget"?)',
  ]);
  const bad = parseConfigError(
    BASE.replace("defaultGroup: g1", "defaultGroup: g1\n      clientAuth: maybe"),
  );
  assert.match(bad, /httpServer\.forwards\.0\.clientAuth: .*"required"/);
});

function parseConfigError(text: string): string {
  try {
    parseConfig(text, "c.yaml", () => undefined);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("clientKeys: an empty key loads with warnings (nobody can present it)", () => {
  const { warnings } = load(`clientKeys:
  - name: default
    key: "\${LLMPROXY_KEY:-}"
`);
  assert.deepEqual(warnings, [
    'client key "default" is empty: nobody can present it (set its variable, e.g. LLMPROXY_KEY)',
    'no client key can be presented: forwards "f1" answer 401 to every request',
  ]);
});

Deno.test("clientKeys: budgets without state.path warn that usage is in memory only", () => {
  const { warnings } = load(`clientKeys:
  - name: a
    key: "k-0123456789"
    budget: {tokens: 100, period: "1d"}
`);
  assert.deepEqual(warnings, [
    "client key budgets are kept in memory only: a restart forgets their usage (set state.path)",
  ]);
});

Deno.test("clientKeys: a key is a secret in /config and the log; a digest is shown", () => {
  const loaded = load(
    `clientKeys:
  - name: a
    key: "literal-key-0123456789"
  - name: b
    key: "${DIGEST}"
  - name: c
    key: "\${C_KEY}"
`,
    { C_KEY: "from-env-0123456789" },
  );
  const secrets = configSecrets(loaded);
  assert.ok(secrets.has("literal-key-0123456789"));
  assert.ok(secrets.has("from-env-0123456789"));
  assert.ok(!secrets.has(DIGEST));
  const shown = JSON.stringify(redactedConfig(loaded));
  assert.doesNotMatch(shown, /literal-key|from-env/);
  assert.match(shown, new RegExp(DIGEST));
});
