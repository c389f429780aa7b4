import assert from "node:assert/strict";
import { Deadlines, TICK_MS } from "../src/deadlines.ts";
import { FakeClock } from "./_helpers/fake_clock.ts";

Deno.test("Deadlines.after() fires once, within a tick of its time, and leaves no timer behind", () => {
  const clock = new FakeClock(1_000_000);
  const deadlines = new Deadlines(clock);
  const fired: number[] = [];
  deadlines.after(30, () => fired.push(clock.now()));
  assert.equal(clock.pending, 1);
  clock.advance(29);
  assert.deepEqual(fired, []);
  clock.advance(TICK_MS + 1);
  assert.equal(fired.length, 1);
  assert.ok(fired[0]! >= 1_000_030 && fired[0]! <= 1_000_030 + TICK_MS, `fired at ${fired[0]}`);
  clock.advance(1_000);
  assert.equal(fired.length, 1);
  assert.equal(deadlines.size, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("Deadlines: a cancelled deadline never fires; cancelling twice is harmless", () => {
  const clock = new FakeClock();
  const deadlines = new Deadlines(clock);
  let fired = 0;
  const a = deadlines.after(20, () => fired++);
  const b = deadlines.after(20, () => fired++);
  a.cancel();
  a.cancel();
  clock.advance(40);
  assert.equal(fired, 1);
  b.cancel(); // after it fired
  assert.equal(deadlines.size, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("Deadlines fire in order when armed out of order, with one timer for them all", () => {
  const clock = new FakeClock();
  const deadlines = new Deadlines(clock);
  const order: number[] = [];
  deadlines.after(60, () => order.push(60));
  deadlines.after(20, () => order.push(20));
  deadlines.after(40, () => order.push(40));
  deadlines.after(40, () => order.push(41));
  assert.equal(clock.pending, 1, "one timer serves every deadline");
  clock.advance(45);
  assert.deepEqual(order, [20, 40, 41]);
  clock.advance(20);
  assert.deepEqual(order, [20, 40, 41, 60]);
  assert.equal(clock.pending, 0);
});

Deno.test("Deadlines: a deadline armed while firing runs on a later tick", () => {
  const clock = new FakeClock();
  const deadlines = new Deadlines(clock);
  const order: string[] = [];
  deadlines.after(10, () => {
    order.push("first");
    deadlines.after(50, () => order.push("second"));
  });
  clock.advance(20);
  assert.deepEqual(order, ["first"]);
  clock.advance(60);
  assert.deepEqual(order, ["first", "second"]);
});

Deno.test("Deadlines: cancelling every deadline clears the timer (no leak)", () => {
  const clock = new FakeClock();
  const deadlines = new Deadlines(clock);
  const all = Array.from({ length: 100 }, (_, i) => deadlines.after(1_000 + i * 7, () => {}));
  assert.equal(deadlines.size, 100);
  assert.equal(clock.pending, 1);
  for (const d of all) d.cancel();
  assert.equal(deadlines.size, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("Deadlines on the system clock: one real deadline fires", async () => {
  const deadlines = new Deadlines();
  await new Promise<void>((resolve) => deadlines.after(1, resolve));
  assert.equal(deadlines.size, 0);
});
