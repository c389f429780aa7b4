/**
 * The batch script against a real `redis-server` (skipped loudly without one): concurrent checks
 * share round trips and stay exact; an operation Redis cannot run fails alone.
 *
 * @module
 */
import assert from "node:assert/strict";
import { openRedisStore } from "../../src/state/redis_store.ts";
import { systemClock } from "../../src/deps.ts";
import { silentLogger } from "../../src/log.ts";
import {
  redisAvailable,
  redisCommand,
  redisScriptRuns,
  type RedisServer,
  startRedisServer,
} from "../_helpers/redis_server.ts";
import { loadWith } from "../_helpers/config_base.ts";

const ignore = !redisAvailable();

/** The Redis store at `url` (prefix `t:`), as `state.store: redis` opens it. */
function openStoreAt(
  url: string,
  timeout: number,
  options: Partial<Parameters<typeof openRedisStore>[1]> = {},
) {
  const state = loadWith(
    `state: {store: redis, redis: {url: "${url}", prefix: "t:", timeout: ${timeout}}}\n`,
  ).config.state;
  return openRedisStore(state, { clock: systemClock, log: silentLogger, ...options });
}

async function withStore(
  fn: (
    limits: Awaited<ReturnType<typeof openRedisStore>>,
    port: number,
    failed: string[],
    redis: RedisServer,
  ) => Promise<void>,
  timeout = 2000,
) {
  const redis = await startRedisServer();
  const failed: string[] = [];
  const limits = await openStoreAt(redis.url, timeout, {
    onCall: (op, _s, isFailed) => isFailed && failed.push(op),
  });
  try {
    await fn(limits, redis.port, failed, redis);
  } finally {
    await limits.close();
    await redis.stop();
  }
}

Deno.test({
  name:
    "redis batch: 200 concurrent takes from a bucket of 50 admit exactly 50, in far fewer round trips than takes",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed) => {
      const limiter = limits.keyed("forward:main", { perSecond: 0.001, burst: 50 });
      const before = await redisScriptRuns(port);
      const decisions = await Promise.all(
        Array.from({ length: 200 }, () => limiter.take("10.0.0.1", 0)),
      );
      const runs = await redisScriptRuns(port) - before;
      assert.equal(decisions.filter((d) => d.allowed).length, 50);
      assert.deepEqual(failed, []);
      assert.ok(runs >= 1 && runs <= 4, `200 takes in ${runs} round trips`);
    }),
});

Deno.test({
  name:
    "redis batch: checks of different kinds in one batch, keys named once, empty arguments kept: a key of 2 requests admits 2 of 3, the IP bucket 3 of 4",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed) => {
      // No tokens per minute and no budget: the admission's last three arguments are empty.
      const key = limits.keyLimits({ name: "k1", ratelimit: { perSecond: 0.001, burst: 2 } })!;
      const ip = limits.keyed("forward:main", { perSecond: 0.001, burst: 3 });
      const before = await redisScriptRuns(port);
      const [verdicts, takes] = await Promise.all([
        Promise.all([key.admit(0), key.admit(0), key.admit(0)]),
        Promise.all(Array.from({ length: 4 }, () => ip.take("10.0.0.9", 0))),
      ]);
      assert.equal(await redisScriptRuns(port) - before, 1, "one round trip for all seven");
      assert.deepEqual(verdicts.map((v) => v?.kind), ["admitted", "admitted", "requests"]);
      assert.deepEqual(takes.map((d) => d.allowed), [true, true, true, false]);
      assert.deepEqual(failed, []);
    }),
});

Deno.test({
  name:
    "redis batch: a value Redis cannot read fails that check alone (local fallback); the others in its batch are answered",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed) => {
      const limiter = limits.keyed("f", { perSecond: 1, burst: 3 });
      assert.equal(await redisCommand(port, "SET t:ip:f:1:3:10.0.0.9 garbage"), "+OK");
      const [bad, good] = await Promise.all([
        limiter.take("10.0.0.9", 0),
        limiter.take("10.0.0.1", 0),
      ]);
      assert.deepEqual(failed, ["ip"], "only the check on the unreadable value failed");
      assert.equal(bad.allowed, true, "the local fallback bucket admits it");
      assert.equal(good.allowed, true);
      assert.equal(good.remaining, 2, "the good check was answered by Redis");
      assert.match(await redisCommand(port, "GET t:ip:f:1:3:10.0.0.1"), /^2 /);
    }),
});

Deno.test({
  name:
    "redis batch: a budget counter gets its expiry (end of its period + 1 min) when it is made; later charges keep it; admission reads it",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed) => {
      const day = 86_400_000;
      const key = limits.keyLimits({
        name: "team",
        tokens: { perMinute: 1_000 },
        budget: { tokens: 100, period: day },
      })!;
      const wallNow = Date.now();
      const counter = `t:key:team:budget:${day}:${Math.floor(wallNow / day) * day}`;
      assert.equal(await key.charge(60, wallNow), 60);
      const ttl = Number(await redisCommand(port, `PTTL ${counter}`));
      const expected = Math.floor(wallNow / day) * day + day + 60_000 - Date.now();
      assert.ok(Math.abs(ttl - expected) < 5_000, `ttl ${ttl}, expected about ${expected}`);
      assert.equal(await key.charge(50, wallNow), 110);
      assert.ok(Number(await redisCommand(port, `PTTL ${counter}`)) > 0, "still expires");
      assert.deepEqual(await key.admit(wallNow), { kind: "budget", budgetUsed: 110 });
      assert.deepEqual(failed, []);
    }),
});

Deno.test({
  name:
    "redis batch: a server that stops answering (frozen, connection open) fails each check within its timeout, nothing waits behind it, and it is used again once it answers",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed, redis) => {
      const limiter = limits.keyed("f", { perSecond: 0.001, burst: 1_000 });
      assert.equal((await limiter.take("10.0.0.1", 0)).remaining, 999);
      redis.freeze(true);
      try {
        for (let i = 0; i < 3; i++) {
          const started = performance.now();
          const decisions = await Promise.all([1, 2, 3].map(() => limiter.take("10.0.0.1", 0)));
          const took = performance.now() - started;
          assert.ok(decisions.every((d) => d.allowed), "the local fallback admits");
          assert.ok(took < 1_000, `round ${i}: answered in ${took.toFixed(0)} ms (timeout 100)`);
        }
        assert.ok(failed.length >= 9, `${failed.length} checks counted as failed`);
        assert.equal(limits.health().ok, false);
      } finally {
        redis.freeze(false);
      }
      // Back: the client reconnects; a check is answered by Redis again: its decision is the
      // bucket Redis holds (the local fallback took 9 of its own). Redis, woken, may still have
      // run batches that reached its socket before the connection was dropped: a check given up
      // may still count there (limits err on the strict side, never the loose one).
      const deadline = performance.now() + 5_000;
      let remaining = -1;
      while (performance.now() < deadline) {
        const before = failed.length;
        const decision = await limiter.take("10.0.0.1", 0);
        if (failed.length === before) {
          remaining = decision.remaining;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const stored = await redisCommand(port, "GET t:ip:f:0.001:1000:10.0.0.1");
      assert.equal(
        remaining,
        Math.floor(Number(stored.split(" ")[0]) + 1e-9),
        `Redis holds ${stored}`,
      );
      assert.ok(remaining >= 989 && remaining <= 998, `${remaining} left`);
      assert.deepEqual(limits.health(), { ok: true });
    }, 100),
});

Deno.test({
  name:
    "redis batch: a 429 cool-down written by one instance refuses the next acquire (one MGET with the bucket); one written by an older version ('1') too",
  ignore,
  fn: () =>
    withStore(async (limits, port, failed) => {
      const upstream = limits.upstreamLimits("u", { perSecond: 1_000, burst: 1_000 });
      assert.deepEqual(await upstream.acquire(), { allowed: true });
      upstream.coolDown(5_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const refused = await upstream.acquire();
      assert.equal(refused?.allowed, false);
      assert.ok(
        !refused?.allowed && refused!.coolDownMs > 4_000 && refused!.coolDownMs <= 5_000,
        JSON.stringify(refused),
      );
      assert.equal(await redisCommand(port, "SET t:upstream:u:cooldown 1 PX 3000"), "+OK");
      const old = await upstream.acquire();
      assert.ok(!old?.allowed && old!.coolDownMs > 2_000 && old!.coolDownMs <= 3_000);
      assert.equal(await redisCommand(port, "DEL t:upstream:u:cooldown"), "1");
      assert.deepEqual(await upstream.acquire(), { allowed: true });
      assert.deepEqual(failed, []);
    }),
});

Deno.test("redis store: a server that accepts and never answers the handshake is left and dialled again (not held for ever)", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const limits = await openStoreAt(`redis://127.0.0.1:${port}/0`, 50, { connectWaitMs: 100 });
  try {
    const deadline = performance.now() + 4_000;
    while (held.length < 2 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(held.length >= 2, `${held.length} connection(s) in 4 s: the stuck one was kept`);
    assert.equal(limits.health().ok, false);
  } finally {
    await limits.close();
    listener.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
  }
});

Deno.test("redis store: a server not reachable at start-up makes the store down from the start (/ready degraded at once), password not shown", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const limits = await openStoreAt(`redis://:hunter2secret@127.0.0.1:${port}/0`, 50, {
    connectWaitMs: 100,
  });
  try {
    const health = limits.health();
    assert.equal(health.ok, false);
    assert.match(!health.ok ? health.error : "", /not reachable at start-up/);
    assert.doesNotMatch(JSON.stringify(health), /hunter2secret/);
  } finally {
    await limits.close();
  }
});
