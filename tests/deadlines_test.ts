import assert from "node:assert/strict";
import { Deadlines, TICK_MS } from "../src/deadlines.ts";

Deno.test("Deadlines.after() fires once, about on time, and leaves no timer behind", async () => {
  const deadlines = new Deadlines();
  const started = performance.now();
  const fired = await new Promise<number>((resolve) => {
    deadlines.after(30, () => resolve(performance.now() - started));
  });
  assert.ok(fired >= 25 && fired < 30 + TICK_MS + 40, `fired after ${fired}ms`);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines: a cancelled deadline never fires; cancelling twice is harmless", async () => {
  const deadlines = new Deadlines();
  let fired = 0;
  const a = deadlines.after(20, () => fired++);
  const b = deadlines.after(20, () => fired++);
  a.cancel();
  a.cancel();
  await new Promise<void>((resolve) => deadlines.after(40, resolve));
  assert.equal(fired, 1);
  b.cancel(); // after it fired
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines fire in order when armed out of order, on shared ticks", async () => {
  const deadlines = new Deadlines();
  const order: number[] = [];
  await new Promise<void>((resolve) => {
    deadlines.after(60, () => {
      order.push(60);
      resolve();
    });
    deadlines.after(20, () => order.push(20));
    deadlines.after(40, () => order.push(40));
    deadlines.after(40, () => order.push(41));
  });
  assert.deepEqual(order, [20, 40, 41, 60]);
});

Deno.test("Deadlines: cancelling every deadline clears the timer (no leak)", () => {
  const deadlines = new Deadlines();
  const all = Array.from({ length: 100 }, (_, i) => deadlines.after(1_000 + i * 7, () => {}));
  assert.equal(deadlines.size, 100);
  for (const d of all) d.cancel();
  assert.equal(deadlines.size, 0);
  // Test sanitizers fail this test if a timer were still pending.
});
