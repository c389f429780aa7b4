import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { configSecrets, redactedConfig } from "../../src/config/secrets.ts";

const BASE = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: g1
upstreams:
  - name: u1
    url: "https://api.example.com/v1"
upstreamGroups:
  - name: g1
    upstreams:
      - name: u1
`;

function load(extra: string, env: Record<string, string> = {}) {
  return parseConfig(BASE + extra, "c.yaml", (name) => env[name]);
}

function errors(extra: string): string[] {
  try {
    load(extra);
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("state: store defaults to memory, with Redis settings defaulted and onStoreError local", () => {
  const { config } = load("");
  assert.deepEqual(config.state, {
    store: "memory",
    redis: { url: "redis://127.0.0.1:6379/0", prefix: "llmproxy:", timeout: 50 },
    onStoreError: "local",
  });
});

Deno.test("state: store redis with its settings (timeout as a duration; bare number in ms)", () => {
  const { config } = load(`state:
  store: redis
  redis: {url: "rediss://cache.internal:6380/2", prefix: "llm:", timeout: "1s"}
  onStoreError: reject
`);
  assert.deepEqual(config.state, {
    store: "redis",
    redis: { url: "rediss://cache.internal:6380/2", prefix: "llm:", timeout: 1_000 },
    onStoreError: "reject",
  });
  assert.equal(load("state: {store: redis, redis: {timeout: 20}}").config.state.redis.timeout, 20);
});

Deno.test("state: a bad Redis URL, an unknown store or onStoreError, and redis with workers > 1 are errors", () => {
  assert.match(
    errors('state: {redis: {url: "http://x:6379"}}').join("\n"),
    /state\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/,
  );
  assert.match(errors("state: {store: memcached}").join("\n"), /state\.store/);
  assert.match(errors("state: {onStoreError: ignore}").join("\n"), /state\.onStoreError/);
  assert.match(
    errors("workers: 2\nstate: {store: redis}").join("\n"),
    /workers: state\.store: redis runs with workers: 1/,
  );
});

Deno.test("state: the Redis password is a secret (log and /config)", () => {
  const loaded = load(
    `state:
  store: redis
  redis: {url: "redis://:\${REDIS_PASSWORD}@cache:6379/0"}
`,
    { REDIS_PASSWORD: "s3cret-redis-pass" },
  );
  assert.ok(configSecrets(loaded).has("s3cret-redis-pass"));
  assert.doesNotMatch(JSON.stringify(redactedConfig(loaded)), /s3cret-redis-pass/);
});
