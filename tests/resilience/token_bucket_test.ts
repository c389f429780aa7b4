import assert from "node:assert/strict";
import { KeyedLimiter, TokenBucket } from "../../src/resilience/token_bucket.ts";

Deno.test("TokenBucket starts full and allows exactly burst takes at once", () => {
  const bucket = new TokenBucket({ perSecond: 1, burst: 5 });
  assert.equal(bucket.tokens(0), 5);
  for (let i = 0; i < 5; i++) assert.equal(bucket.tryTake(0), true);
  assert.equal(bucket.tryTake(0), false);
  assert.equal(bucket.tokens(0), 0);
});

Deno.test("TokenBucket refills at perSecond and caps at burst", () => {
  const bucket = new TokenBucket({ perSecond: 10, burst: 5 });
  for (let i = 0; i < 5; i++) bucket.tryTake(1_000);
  assert.equal(bucket.tokens(1_050), 0.5);
  assert.equal(bucket.tokens(1_100), 1);
  assert.equal(bucket.tokens(1_300), 3);
  assert.equal(bucket.tokens(60_000), 5, "capped at burst");
  assert.equal(bucket.tryTake(1_099), false);
  assert.equal(bucket.tryTake(1_100), true);
  assert.equal(bucket.tryTake(1_100), false);
});

Deno.test("TokenBucket.tryTake(n) takes several tokens atomically or none", () => {
  const bucket = new TokenBucket({ perSecond: 1, burst: 10 });
  assert.equal(bucket.tryTake(0, 7), true);
  assert.equal(bucket.tryTake(0, 4), false);
  assert.equal(bucket.tokens(0), 3, "a refused take consumes nothing");
  assert.equal(bucket.tryTake(0, 3), true);
});

Deno.test("TokenBucket.msUntil() gives the exact wait, after which the take succeeds", () => {
  const bucket = new TokenBucket({ perSecond: 3, burst: 2 });
  bucket.tryTake(0, 2);
  const wait = bucket.msUntil(0);
  assert.equal(wait, 334); // 333.3… ms rounded up
  assert.equal(bucket.tryTake(wait - 1), false);
  assert.equal(bucket.tryTake(wait), true);
  assert.equal(bucket.msUntil(wait), 333, "the 0.002 token left over counts");
  assert.equal(bucket.msUntil(10_000), 0);
});

Deno.test("TokenBucket.msUntil() is Infinity when n exceeds burst", () => {
  const bucket = new TokenBucket({ perSecond: 100, burst: 3 });
  assert.equal(bucket.msUntil(0, 4), Infinity);
  assert.equal(bucket.tryTake(1e9, 4), false);
  assert.equal(bucket.msUntil(0, 3), 0);
});

Deno.test("TokenBucket mints nothing when the clock goes backwards", () => {
  const bucket = new TokenBucket({ perSecond: 1, burst: 1 });
  assert.equal(bucket.tryTake(10_000), true);
  assert.equal(bucket.tryTake(5_000), false);
  assert.equal(bucket.tokens(5_000), 0);
  assert.equal(bucket.tryTake(10_999), false);
  assert.equal(bucket.tryTake(11_000), true);
});

Deno.test("TokenBucket rejects invalid options", () => {
  assert.throws(() => new TokenBucket({ perSecond: 0, burst: 1 }), /perSecond/);
  assert.throws(() => new TokenBucket({ perSecond: 1, burst: 0 }), /burst/);
  assert.throws(() => new TokenBucket({ perSecond: NaN, burst: 1 }), /perSecond/);
});

Deno.test("KeyedLimiter.take() reports limit, remaining, reset and retry-after", () => {
  const limiter = new KeyedLimiter({ perSecond: 2, burst: 3 });
  assert.deepEqual(limiter.take("a", 0), {
    allowed: true,
    limit: 3,
    remaining: 2,
    resetMs: 500,
    retryAfterMs: 0,
  });
  limiter.take("a", 0);
  assert.deepEqual(limiter.take("a", 0), {
    allowed: true,
    limit: 3,
    remaining: 0,
    resetMs: 1_500,
    retryAfterMs: 0,
  });
  assert.deepEqual(limiter.take("a", 100), {
    allowed: false,
    limit: 3,
    remaining: 0,
    resetMs: 1_400,
    retryAfterMs: 400,
  });
  assert.equal(limiter.take("a", 500).allowed, true);
});

Deno.test("KeyedLimiter keeps keys independent", () => {
  const limiter = new KeyedLimiter({ perSecond: 1, burst: 1 });
  assert.equal(limiter.take("10.0.0.1", 0).allowed, true);
  assert.equal(limiter.take("10.0.0.1", 0).allowed, false);
  assert.equal(limiter.take("10.0.0.2", 0).allowed, true);
  assert.equal(limiter.size, 2);
});

Deno.test("KeyedLimiter stays bounded by maxKeys under 100_000 distinct keys", () => {
  const maxKeys = 1_000;
  // Slow refill: no bucket is full again during the flood, so only LRU eviction bounds it.
  const limiter = new KeyedLimiter({ perSecond: 0.001, burst: 5, maxKeys });
  let peak = 0;
  for (let i = 0; i < 100_000; i++) {
    assert.equal(limiter.take(`key-${i}`, i).allowed, true);
    peak = Math.max(peak, limiter.size);
  }
  assert.equal(peak, maxKeys);
  assert.ok(limiter.size <= maxKeys);
});

Deno.test("KeyedLimiter default maxKeys is 10_000", () => {
  const limiter = new KeyedLimiter({ perSecond: 0.001, burst: 5 });
  for (let i = 0; i < 20_000; i++) limiter.take(`k${i}`, 0);
  assert.equal(limiter.size, 10_000);
});

Deno.test("KeyedLimiter evicts idle keys once their bucket has refilled", () => {
  const limiter = new KeyedLimiter({ perSecond: 10, burst: 5 });
  limiter.take("a", 0);
  limiter.take("b", 0);
  limiter.take("c", 0);
  assert.equal(limiter.size, 3);
  limiter.take("d", 99); // a, b, c refill at 100 ms: not yet
  assert.equal(limiter.size, 4);
  limiter.take("e", 100);
  assert.equal(limiter.size, 2, "a, b and c were full again and swept");
  // A steady trickle of new keys keeps the map near the number of recently active keys.
  for (let i = 0; i < 10_000; i++) limiter.take(`ip-${i}`, 1_000 + i * 10);
  assert.ok(limiter.size <= 12, `size ${limiter.size}`);
});

Deno.test("KeyedLimiter evicts the least-recently-used key at maxKeys, keeping active ones", () => {
  const limiter = new KeyedLimiter({ perSecond: 0.001, burst: 2, maxKeys: 2 });
  limiter.take("a", 0);
  limiter.take("a", 0); // a is drained
  limiter.take("b", 1);
  limiter.take("a", 2); // refused, but touches a: b is now least recently used
  limiter.take("c", 3); // evicts b
  assert.equal(limiter.size, 2);
  assert.equal(limiter.take("a", 4).allowed, false, "a kept its drained bucket");
  assert.equal(limiter.take("b", 5).remaining, 1, "b came back with a fresh bucket");
});

Deno.test("KeyedLimiter eviction of a full bucket is invisible to the client", () => {
  // Same traffic through the limiter (which sweeps) and a bucket that is never forgotten.
  const options = { perSecond: 4, burst: 3 };
  const limiter = new KeyedLimiter({ ...options, maxKeys: 10 });
  const reference = new TokenBucket(options);
  let evictions = 0;
  for (const now of [0, 10, 20, 2_000, 2_001, 2_002, 2_003, 5_000, 9_999]) {
    const sizeBefore = limiter.size;
    limiter.take(`other-${now}`, now); // sweeps the client's key when its bucket is full
    if (limiter.size <= sizeBefore) evictions++;
    const allowed = reference.tryTake(now);
    assert.deepEqual(limiter.take("client", now), {
      allowed,
      limit: 3,
      remaining: Math.floor(reference.tokens(now)),
      resetMs: reference.msUntilFull(now),
      retryAfterMs: allowed ? 0 : reference.msUntil(now),
    }, `at ${now} ms`);
  }
  assert.ok(evictions > 0, "the client's full bucket was actually evicted along the way");
});

Deno.test("KeyedLimiter rejects invalid maxKeys", () => {
  assert.throws(() => new KeyedLimiter({ perSecond: 1, burst: 1, maxKeys: 0 }), /maxKeys/);
});
