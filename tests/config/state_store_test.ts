import assert from "node:assert/strict";
import { errorsWith as errors, loadWith as load } from "../_helpers/config_base.ts";
import { configSecrets, redactedConfig } from "../../src/config/secrets.ts";

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

Deno.test("state: a bad Redis URL, an unknown store or onStoreError are errors; redis with workers is not", () => {
  assert.match(
    errors('state: {redis: {url: "http://x:6379"}}').join("\n"),
    /state\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/,
  );
  assert.match(errors("state: {store: memcached}").join("\n"), /state\.store/);
  assert.match(errors("state: {onStoreError: ignore}").join("\n"), /state\.onStoreError/);
  const both = load("workers: 2\nstate: {store: redis}").config;
  assert.equal(both.workers, 2);
  assert.equal(both.state.store, "redis");
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
