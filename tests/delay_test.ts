import assert from "node:assert/strict";
import { delay } from "../src/delay.ts";

Deno.test("delay() resolves at once for 0 ms, without a timer", async () => {
  await delay(0);
  await delay(-5, { signal: new AbortController().signal });
});

Deno.test("delay() rejects with the signal's reason when it is aborted, and clears its timer", async () => {
  const controller = new AbortController();
  const waiting = delay(60_000, { signal: controller.signal });
  const reason = new Error("shutting down");
  controller.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
});

Deno.test("delay() rejects at once when the signal was aborted before", async () => {
  const reason = new Error("gone");
  await assert.rejects(delay(60_000, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
  await assert.rejects(delay(0, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
});

Deno.test("delay() resolves after its time and stops listening to the signal", async () => {
  const controller = new AbortController();
  await delay(1, { signal: controller.signal });
  controller.abort(); // nothing left to reject
});
