import assert from "node:assert/strict";
import {
  ScriptBatcher,
  type ScriptCall,
  StoreOperationError,
  StoreTimeoutError,
  STUCK_AFTER,
} from "../../src/state/script_batch.ts";
import { batchArguments, BUCKET_TAKE, KEY_ADMIT } from "../../src/state/redis_scripts.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

/** A store whose round trips the test answers by hand: each `send` waits in `batches`. */
class ManualStore {
  batches: {
    calls: readonly ScriptCall[];
    answer: (answers: readonly unknown[]) => void;
    fail: (error: Error) => void;
  }[] = [];

  send = (calls: readonly ScriptCall[]): Promise<readonly unknown[]> =>
    new Promise((answer, fail) => this.batches.push({ calls, answer, fail }));
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

function setup(timeoutMs = 50, maxBatch?: number) {
  const store = new ManualStore();
  const clock = new FakeClock();
  const timeouts: number[] = [];
  const batcher = new ScriptBatcher({
    send: store.send,
    clock,
    timeoutMs,
    onStuck: () => timeouts.push(clock.now()),
    ...(maxBatch ? { maxBatch } : {}),
  });
  return { store, clock, batcher, timeouts };
}

Deno.test("ScriptBatcher: checks made in one turn leave as one batch; checks made while it is out leave together as the next", async () => {
  const { store, batcher } = setup();
  const first = [1, 2, 3].map((i) => batcher.run(BUCKET_TAKE, [`ip${i}`], [i]));
  await turn();
  assert.equal(store.batches.length, 1, "one round trip for the three checks");
  assert.deepEqual(store.batches[0]!.calls.map((c) => c.keys[0]), ["ip1", "ip2", "ip3"]);
  const second = [4, 5].map((i) => batcher.run(KEY_ADMIT, [`k${i}`], [i]));
  await turn();
  assert.equal(store.batches.length, 1, "nothing leaves while a batch is out");
  store.batches[0]!.answer(["a1", "a2", "a3"]);
  assert.deepEqual(await Promise.all(first), ["a1", "a2", "a3"], "each check gets its own answer");
  assert.equal(store.batches.length, 2, "the waiting checks leave when the answer arrives");
  assert.deepEqual(store.batches[1]!.calls.map((c) => c.script.name), ["key_admit", "key_admit"]);
  store.batches[1]!.answer(["b4", "b5"]);
  assert.deepEqual(await Promise.all(second), ["b4", "b5"]);
  assert.equal(batcher.inFlight, 0);
});

Deno.test("ScriptBatcher: an operation the store could not run fails alone; a failed round trip fails its whole batch", async () => {
  const { store, batcher } = setup();
  const a = batcher.run(BUCKET_TAKE, ["a"], []);
  const b = batcher.run(BUCKET_TAKE, ["b"], []);
  await turn();
  store.batches[0]!.answer([[1, "0"], null]);
  assert.deepEqual(await a, [1, "0"]);
  await assert.rejects(b, /could not run bucket_take/);
  const c = batcher.run(BUCKET_TAKE, ["c"], []);
  const d = batcher.run(BUCKET_TAKE, ["d"], []);
  await turn();
  store.batches[1]!.fail(new Error("Connection is closed."));
  await assert.rejects(c, /Connection is closed/);
  await assert.rejects(d, /Connection is closed/);
  assert.equal(batcher.inFlight, 0);
});

Deno.test("ScriptBatcher: a batch gets its timeout from when it leaves, plus one event-loop turn; the check that waited behind it leaves then; a late answer is ignored", async () => {
  const { store, clock, batcher, timeouts } = setup(50);
  const stuck = batcher.run(BUCKET_TAKE, ["a"], []);
  await turn();
  clock.advance(30);
  const waiting = batcher.run(BUCKET_TAKE, ["b"], []);
  await turn();
  assert.equal(store.batches.length, 1);
  clock.advance(20);
  await assert.rejects(stuck, StoreTimeoutError);
  await assert.rejects(stuck, /did not answer within 50ms/);
  assert.equal(store.batches.length, 2, "the waiting check left when the stuck batch was given up");
  store.batches[0]!.answer(["late"]);
  assert.deepEqual(clock.dueIn, [50], "the second batch has its own 50 ms");
  clock.advance(49);
  store.batches[1]!.answer(["b"]);
  assert.equal(await waiting, "b");
  assert.deepEqual(timeouts, [], "one slow batch does not make the store stuck");
  assert.equal(batcher.inFlight, 0);
  assert.equal(clock.pending, 0, "no timer left");
});

Deno.test("ScriptBatcher: an answer handled in the event-loop turn after the timer still counts", async () => {
  const clock = new FakeClock();
  let answer: ((a: readonly unknown[]) => void) | undefined;
  const batcher = new ScriptBatcher({
    send: () => new Promise((resolve) => answer = resolve),
    // The timer fires while the answer is already read; the next turn is 1 ms later here.
    clock: {
      now: () => clock.now(),
      wallNow: () => clock.wallNow(),
      after: (ms, fire, options) =>
        ms === 0 ? clock.after(1, fire, options) : clock.after(ms, () => {
          fire();
          answer?.(["in time"]);
        }, options),
    },
    timeoutMs: 50,
  });
  const check = batcher.run(BUCKET_TAKE, ["a"], []);
  await turn();
  clock.advance(50);
  await turn();
  clock.advance(1);
  assert.equal(await check, "in time");
});

Deno.test("ScriptBatcher: the store is called stuck only after batches in a row end without any answer, late ones included", async () => {
  const { store, clock, batcher, timeouts } = setup(50);
  const silent = async () => {
    const check = batcher.run(BUCKET_TAKE, ["a"], []).catch((e) => e);
    await turn();
    clock.advance(50);
    assert.ok((await check) instanceof StoreTimeoutError);
  };
  await silent();
  await silent();
  store.batches[1]!.answer(["late"]); // alive, only slow: the count starts again
  await turn();
  await silent();
  await silent();
  assert.deepEqual(timeouts, []);
  await silent();
  assert.equal(timeouts.length, 1, `stuck after ${STUCK_AFTER} silent batches in a row`);
  assert.equal(STUCK_AFTER, 3);
});

Deno.test("ScriptBatcher: an answer that is not a list fails its batch's checks (no throw, nothing left pending)", async () => {
  const { store, clock, batcher } = setup();
  const checks = [batcher.run(BUCKET_TAKE, ["a"], []), batcher.run(BUCKET_TAKE, ["b"], [])];
  await turn();
  store.batches[0]!.answer(null as unknown as unknown[]);
  for (const check of checks) await assert.rejects(check, StoreOperationError);
  assert.equal(batcher.inFlight, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("ScriptBatcher: a full queue sends another batch at once, even with one out", async () => {
  const { store, batcher } = setup(50, 3);
  const first = batcher.run(BUCKET_TAKE, ["a"], []);
  await turn();
  const rest = [1, 2, 3, 4].map((i) => batcher.run(BUCKET_TAKE, [`k${i}`], []));
  assert.equal(store.batches.length, 2, "three waiting checks make a full batch");
  assert.deepEqual(store.batches[1]!.calls.map((c) => c.keys[0]), ["k1", "k2", "k3"]);
  store.batches[1]!.answer([1, 2, 3]);
  store.batches[0]!.answer([0]);
  assert.equal(await first, 0);
  assert.equal(store.batches.length, 3, "the fourth leaves when nothing is out");
  store.batches[2]!.answer([4]);
  assert.deepEqual(await Promise.all(rest), [1, 2, 3, 4]);
});

Deno.test("ScriptBatcher: a send that throws fails its batch instead of the caller's code", async () => {
  const clock = new FakeClock();
  const batcher = new ScriptBatcher({
    send: () => {
      throw new Error("not connected");
    },
    clock,
    timeoutMs: 50,
  });
  await assert.rejects(batcher.run(BUCKET_TAKE, ["a"], []), /not connected/);
  assert.equal(clock.pending, 0);
});

Deno.test("batchArguments: each key once, then one JSON array of per operation its name, counts, key positions and arguments", () => {
  const args = batchArguments([
    { script: BUCKET_TAKE, keys: ["p:ip:1"], args: [0.5, 10] },
    { script: KEY_ADMIT, keys: ["r", "t", "b"], args: ["", "", 1, 60, ""] },
    // The same keys again (another request of the same client) are named by position.
    { script: KEY_ADMIT, keys: ["r", "t", "b"], args: [1e-7, 16666.666666666668, "", "", ""] },
    { script: BUCKET_TAKE, keys: ["p:ip:1"], args: [0.5, 10] },
  ]);
  assert.deepEqual(args.slice(0, 5), ["4", "p:ip:1", "r", "t", "b"]);
  assert.equal(args.length, 6);
  assert.deepEqual(JSON.parse(args[5]!), [
    ...["bucket_take", 1, 2, 1, 0.5, 10],
    ...["key_admit", 3, 5, 2, 3, 4, "", "", 1, 60, ""],
    ...["key_admit", 3, 5, 2, 3, 4, 1e-7, 16666.666666666668, "", "", ""],
    ...["bucket_take", 1, 2, 1, 0.5, 10],
  ]);
  assert.deepEqual(batchArguments([]), ["0", "[]"]);
});
