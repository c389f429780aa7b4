import assert from "node:assert/strict";
import { ReloadQueue } from "../../src/server/reload_queue.ts";

/** A queue whose runs finish when the test says so. */
function manual() {
  const finishers: ((value: number) => void)[] = [];
  let active = 0;
  let maxActive = 0;
  const queue = new ReloadQueue(() => {
    active++;
    maxActive = Math.max(maxActive, active);
    return new Promise<number>((resolve) => {
      const run = finishers.length + 1;
      finishers.push(() => {
        active--;
        resolve(run);
      });
    });
  });
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
  return { queue, finishers, tick, maxActive: () => maxActive };
}

Deno.test("ReloadQueue.request() runs at once when idle", async () => {
  const { queue, finishers, tick } = manual();
  const first = queue.request();
  await tick();
  assert.equal(finishers.length, 1);
  finishers[0]!(1);
  assert.equal(await first, 1);
});

Deno.test("ReloadQueue.request() coalesces a burst during a run into exactly one more run", async () => {
  const { queue, finishers, tick, maxActive } = manual();
  const first = queue.request();
  await tick();
  const burst = [queue.request(), queue.request(), queue.request()];
  await tick();
  assert.equal(finishers.length, 1, "nothing else runs while the first does");
  finishers[0]!(1);
  assert.equal(await first, 1);
  await tick();
  assert.equal(finishers.length, 2);
  const late = queue.request(); // joins the run that is now going, not a third
  finishers[1]!(2);
  assert.deepEqual(await Promise.all(burst), [2, 2, 2]);
  assert.equal(maxActive(), 1);
  await tick();
  assert.equal(finishers.length, 3, "a request during the second run gets a third");
  finishers[2]!(3);
  assert.equal(await late, 3);
});

Deno.test("ReloadQueue.request(): a run that throws settles its waiters and the next run starts", async () => {
  let calls = 0;
  const queue = new ReloadQueue<number>(() => {
    calls++;
    if (calls === 1) throw new Error("boom");
    return Promise.resolve(calls);
  });
  const first = queue.request();
  const second = queue.request();
  await assert.rejects(first, /boom/);
  assert.equal(await second, 2);
});
