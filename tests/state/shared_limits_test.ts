import assert from "node:assert/strict";
import { SharedLimits } from "../../src/state/shared_limits.ts";
import { hashId, SharedTable } from "../../src/state/shared_table.ts";
import { KeyedLimiter, TokenBucket } from "../../src/resilience/token_bucket.ts";
import { TokenRate } from "../../src/keys/token_rate.ts";

const OPTIONS = { perSecond: 3, burst: 5 };

Deno.test("SharedLimits.bucket() behaves as TokenBucket at every step of a fake clock", () => {
  const shared = SharedLimits.create({ clientSlots: 64, namedSlots: 64 }).bucket("u", OPTIONS);
  const local = new TokenBucket(OPTIONS);
  for (const [now, n] of [[0, 1], [0, 4], [0, 1], [100, 1], [334, 1], [500, 2], [2000, 5]]) {
    assert.equal(shared.tryTake(now!, n), local.tryTake(now!, n), `take ${n} at ${now}`);
    assert.equal(shared.tokens(now!), local.tokens(now!));
    assert.equal(shared.msUntil(now!), local.msUntil(now!));
    assert.equal(shared.msUntilFull(now!), local.msUntilFull(now!));
  }
  assert.equal(shared.burst, 5);
});

Deno.test("SharedLimits: the same id in two views of the tables is the same bucket", () => {
  const a = SharedLimits.create({ clientSlots: 64, namedSlots: 64 });
  const b = new SharedLimits(a.data);
  const first = a.bucket("upstream:x", { perSecond: 1, burst: 2 });
  const second = b.bucket("upstream:x", { perSecond: 1, burst: 2 });
  assert.ok(first.tryTake(0));
  assert.ok(second.tryTake(0));
  assert.ok(!first.tryTake(0), "both took from one bucket of 2");
  // Other settings: another bucket (a reload that changes a limit starts it afresh).
  assert.ok(b.bucket("upstream:x", { perSecond: 1, burst: 3 }).tryTake(0));
});

Deno.test("SharedLimits.keyed() decides as KeyedLimiter, per client", () => {
  const shared = SharedLimits.create({ clientSlots: 64, namedSlots: 64 }).keyed("f", OPTIONS);
  const local = new KeyedLimiter(OPTIONS);
  for (const [ip, now] of [["a", 0], ["a", 0], ["b", 0], ["a", 0], ["a", 0], ["a", 0], ["a", 0]]) {
    assert.deepEqual(
      shared.take(ip as string, now as number),
      local.take(ip as string, now as number),
    );
  }
  for (const now of [100, 400, 1000, 5000]) {
    assert.deepEqual(shared.take("a", now), local.take("a", now));
  }
});

Deno.test("SharedLimits.keyed(): clients beyond the table evict full buckets before refilling ones", () => {
  const limits = SharedLimits.create({ clientSlots: 64, namedSlots: 64 });
  const limiter = limits.keyed("f", { perSecond: 1, burst: 1 });
  assert.ok(limiter.take("victim", 0).allowed);
  // Thousands of clients at t=0 in a table of 64: the least recently used are dropped (as the
  // in-memory limiter does past maxKeys), and the table stays its size.
  for (let i = 0; i < 5_000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`, 0);
  // By t=10 s those buckets are full again; a refilling one is kept while they are dropped.
  const other = limits.keyed("g", { perSecond: 0.001, burst: 1 });
  assert.ok(other.take("slow", 10_000).allowed);
  for (let i = 0; i < 24; i++) limiter.take(`10.1.0.${i}`, 10_000);
  assert.ok(!other.take("slow", 10_000).allowed, "a refilling bucket was not evicted");
});

Deno.test("SharedLimits.tokenRate() behaves as TokenRate (debt, refill, admission)", () => {
  const shared = SharedLimits.create({ clientSlots: 8, namedSlots: 64 }).tokenRate("k", 600);
  const local = new TokenRate(600);
  for (const [now, tokens] of [[0, 500], [10, 200], [50, 0], [1000, 100], [60_000, 0]]) {
    if (tokens) {
      shared.charge(now!, tokens);
      local.charge(now!, tokens);
    }
    assert.equal(shared.level(now!), local.level(now!));
    assert.equal(shared.msUntilAdmitted(now!), local.msUntilAdmitted(now!));
  }
});

Deno.test("SharedLimits.coolDown() only ever moves later, seen by every view", () => {
  const a = SharedLimits.create({ clientSlots: 8, namedSlots: 64 });
  const b = new SharedLimits(a.data);
  a.coolDown("u").extend(500);
  b.coolDown("u").extend(200);
  assert.equal(b.coolDown("u").until(), 500);
});

Deno.test("SharedBudgetLedger: usage per period, restored, and marked for the writer", () => {
  const limits = SharedLimits.create({ clientSlots: 8, namedSlots: 64 });
  const writer = limits.budgets();
  writer.track(["team"]);
  writer.restore([{ name: "team", periodStart: 0, used: 10 }]);
  assert.equal(writer.takeChanges(), undefined, "restoring is no change");
  const worker = new SharedLimits(limits.data).budgets();
  assert.equal(worker.used("team", 1_000, 500), 10);
  worker.charge("team", 1_000, 600, 5);
  assert.equal(writer.used("team", 1_000, 999), 15);
  assert.equal(writer.used("team", 1_000, 1_000), 0, "a new period");
  assert.deepEqual(writer.takeChanges(), [{ name: "team", periodStart: 0, used: 15 }]);
  assert.equal(writer.takeChanges(), undefined);
  worker.charge("team", 1_000, 1_500, 7);
  assert.deepEqual(writer.takeChanges(), [{ name: "team", periodStart: 1_000, used: 7 }]);
});

Deno.test("SharedTable: a table that does not evict says when it is full", () => {
  const table = SharedTable.create({ capacity: 8, evicting: false });
  for (let i = 0; i < 8; i++) assert.ok(table.slotOf(hashId(`k${i}`), 0, () => {}) >= 0);
  assert.equal(table.slotOf(hashId("one more"), 0, () => {}), -1);
  assert.ok(table.slotOf(hashId("k3"), 0, () => {}) >= 0, "known keys are still found");
  const limits = SharedLimits.create({ clientSlots: 8, namedSlots: 8 });
  for (let i = 0; i < 8; i++) limits.coolDown(`u${i}`);
  assert.throws(() => limits.coolDown("u8"), /shared limit state is full \(8 entries\)/);
});

async function hammer(kind: "bucket" | "keyed"): Promise<number> {
  const limits = SharedLimits.create({ clientSlots: 64, namedSlots: 64 });
  const url = new URL("../_helpers/shared_bucket_worker.ts", import.meta.url);
  const workers = [0, 1].map(() => new Worker(url, { type: "module" }));
  try {
    const counts = await Promise.all(
      workers.map((worker) =>
        new Promise<number>((resolve, reject) => {
          worker.onmessage = (event) => resolve(event.data as number);
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
          worker.postMessage({ data: limits.data, kind, takes: 20_000 });
        })
      ),
    );
    return counts[0]! + counts[1]!;
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

Deno.test("SharedLimits: two threads hammering one bucket admit exactly its burst", async () => {
  assert.equal(await hammer("bucket"), 1000);
});

Deno.test("SharedLimits: two threads hammering one client's bucket admit exactly its burst", async () => {
  assert.equal(await hammer("keyed"), 1000);
});

Deno.test("SharedBudgetLedger.restore: totals that arrive out of order never lower the usage of a period", () => {
  const ledger = SharedLimits.create({ clientSlots: 8, namedSlots: 64 }).budgets();
  ledger.track(["team"]);
  ledger.restore([{ name: "team", periodStart: 1_000, used: 50 }]);
  ledger.restore([{ name: "team", periodStart: 1_000, used: 40 }]); // an older answer, late
  assert.equal(ledger.used("team", 1_000, 1_500), 50);
  ledger.restore([{ name: "team", periodStart: 0, used: 90 }]); // the period before
  assert.equal(ledger.used("team", 1_000, 1_500), 50);
  ledger.restore([{ name: "team", periodStart: 1_000, used: 60 }]);
  assert.equal(ledger.used("team", 1_000, 1_500), 60);
  ledger.restore([{ name: "team", periodStart: 2_000, used: 3 }]); // a new period starts over
  assert.equal(ledger.used("team", 1_000, 2_500), 3);
});
