import assert from "node:assert/strict";
import {
  type BodyEnd,
  BodyTimeoutError,
  BrokenBodyError,
  observeBody,
  type ObserveOptions,
} from "../../src/stream/observe.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { Deadlines, TICK_MS } from "../../src/deadlines.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A source the test drives by hand; `highWaterMark: 0` so it is only pulled on demand. */
function manualSource() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const state = { pulls: 0, cancelReason: undefined as unknown, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    pull() {
      state.pulls++;
    },
    cancel(reason) {
      state.cancelled = true;
      state.cancelReason = reason;
    },
  }, { highWaterMark: 0 });
  return {
    stream,
    state,
    push: (text: string) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    error: (error: unknown) => controller.error(error),
  };
}

function fromChunks(chunks: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks.map((c) => encoder.encode(c)));
}

/** observeBody with recording hooks on a fake clock at 0; overrides as given. */
function observe(body: ReadableStream<Uint8Array>, overrides: Partial<ObserveOptions> = {}) {
  const ends: BodyEnd[] = [];
  const aborts: unknown[] = [];
  const chunks: string[] = [];
  const clock = new FakeClock(0);
  const observed = observeBody(body.getReader(), {
    idleTimeoutMs: 10_000,
    clock,
    abort: (reason) => aborts.push(reason),
    onEnd: (end) => ends.push(end),
    onChunk: (chunk) => chunks.push(decoder.decode(chunk)),
    ...overrides,
  });
  return { observed, ends, aborts, chunks, clock };
}

/** Lets the streams' promise callbacks run. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

/** The SSE error event an observer appends when it is given one. */
const errorEvent = (message: string) => encoder.encode(`event: error\ndata: ${message}\n\n`);

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

Deno.test("observeBody() passes every byte through and reports the end once", async () => {
  const { observed, ends, aborts, chunks } = observe(
    fromChunks(["data: a\n\n", "data: bé\n\n", "x"]),
  );
  assert.equal(await readAll(observed), "data: a\n\ndata: bé\n\nx");
  assert.deepEqual(chunks, ["data: a\n\n", "data: bé\n\n", "x"]);
  assert.deepEqual(ends, [{ kind: "end", bytes: 9 + 11 + 1 }]);
  assert.deepEqual(aborts, []);
});

Deno.test("observeBody() reports an empty body's end with 0 bytes", async () => {
  const { observed, ends } = observe(fromChunks([]));
  assert.equal(await readAll(observed), "");
  assert.deepEqual(ends, [{ kind: "end", bytes: 0 }]);
});

Deno.test("observeBody() reads nothing ahead of the client", async () => {
  const source = manualSource();
  const { observed, ends } = observe(source.stream);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(source.state.pulls, 0);
  const reader = observed.getReader();
  const first = reader.read();
  assert.equal(source.state.pulls, 1);
  source.push("one");
  assert.equal(decoder.decode((await first).value), "one");
  await reader.cancel("done");
  assert.deepEqual(ends, [{ kind: "cancel", bytes: 3 }]);
});

Deno.test("observeBody() cancel: onEnd once, the upstream aborted and its body cancelled", async () => {
  const source = manualSource();
  const { observed, ends, aborts } = observe(source.stream);
  const reader = observed.getReader();
  const read = reader.read();
  source.push("abc");
  await read;
  await reader.cancel("client gone");
  assert.deepEqual(ends, [{ kind: "cancel", bytes: 3 }]);
  assert.deepEqual(aborts, ["client gone"]);
  assert.equal(source.state.cancelled, true);
  assert.equal(source.state.cancelReason, "client gone");
});

Deno.test("observeBody() non-SSE: a source error errors the body (never a clean end)", async () => {
  const source = manualSource();
  const { observed, ends } = observe(source.stream);
  const reader = observed.getReader();
  const read = reader.read();
  source.push("partial");
  assert.equal(decoder.decode((await read).value), "partial");
  const boom = new Error("connection reset");
  const next = reader.read();
  source.error(boom);
  await assert.rejects(next, (error) => error instanceof BrokenBodyError && error.cause === boom);
  assert.equal(ends.length, 1);
  assert.deepEqual(ends[0], { kind: "error", bytes: 7, error: boom });
  reader.releaseLock();
});

Deno.test("observeBody() SSE: a source error ends the stream with an error event", async () => {
  const source = manualSource();
  const { observed, ends } = observe(source.stream, { errorEvent });
  const text = readAll(observed);
  await new Promise((resolve) => setTimeout(resolve, 0));
  source.push("data: 1\n\n");
  await new Promise((resolve) => setTimeout(resolve, 0));
  source.error(new Error("connection reset"));
  assert.equal(
    await text,
    "data: 1\n\nevent: error\ndata: upstream stream broke: connection reset\n\n",
  );
  assert.equal(ends.length, 1);
  assert.equal(ends[0]!.kind, "error");
  assert.equal(ends[0]!.bytes, 9, "the error event is not counted as upstream bytes");
});

Deno.test("observeBody() streamIdle: silence past the limit aborts and errors the body", async () => {
  const source = manualSource();
  const { observed, ends, aborts, clock } = observe(source.stream, { idleTimeoutMs: 20 });
  const reader = observed.getReader();
  const read = reader.read();
  source.push("first");
  await read;
  const next = reader.read();
  await turn(); // the read reaches the upstream: its silence counts from here
  clock.advance(19);
  assert.equal(aborts.length, 0);
  clock.advance(1);
  await assert.rejects(next, (error) => {
    assert.ok(error instanceof BrokenBodyError);
    const cause = error.cause;
    assert.ok(cause instanceof BodyTimeoutError);
    assert.equal(cause.phase, "streamIdle");
    assert.match(cause.message, /sent nothing for 20ms/);
    return true;
  });
  assert.equal(aborts.length, 1);
  assert.ok(aborts[0] instanceof BodyTimeoutError);
  assert.equal(source.state.cancelled, true);
  assert.equal(ends.length, 1);
  assert.equal(ends[0]!.kind, "error");
  assert.equal((ends[0] as { timeout?: string }).timeout, "streamIdle");
  assert.equal(ends[0]!.bytes, 5);
  reader.releaseLock();
});

Deno.test("observeBody() with shared deadline ticks: streamIdle fires through them, within a tick", async () => {
  const source = manualSource();
  const clock = new FakeClock(0);
  const timers = new Deadlines(clock);
  const { observed, aborts } = observe(source.stream, { idleTimeoutMs: 20, clock, timers });
  const reader = observed.getReader();
  const next = reader.read();
  await turn();
  assert.equal(timers.size, 1, "the observer's timer is a shared deadline");
  assert.equal(clock.pending, 1, "and only the wheel's one timer runs");
  clock.advance(19);
  assert.equal(aborts.length, 0);
  clock.advance(TICK_MS + 1);
  await assert.rejects(next, BrokenBodyError);
  assert.equal(aborts.length, 1);
  assert.ok(aborts[0] instanceof BodyTimeoutError);
  assert.equal(timers.size, 0);
  reader.releaseLock();
});

Deno.test("observeBody() streamIdle on SSE ends with an error event naming the timeout", async () => {
  const source = manualSource();
  const { observed, ends, clock } = observe(source.stream, { idleTimeoutMs: 15, errorEvent });
  const text = readAll(observed);
  await turn();
  clock.advance(15);
  assert.equal(
    await text,
    "event: error\ndata: upstream sent nothing for 15ms (streamIdle timeout)\n\n",
  );
  assert.equal(ends.length, 1);
  assert.equal((ends[0] as { timeout?: string }).timeout, "streamIdle");
});

Deno.test("observeBody() chunks in time keep a stream alive past the idle limit in total", async () => {
  const source = manualSource();
  const { observed, ends, aborts, clock } = observe(source.stream, { idleTimeoutMs: 20 });
  const reader = observed.getReader();
  let read = reader.read();
  source.push("a");
  await read;
  clock.set(15); // no timer runs: the time of the next chunk
  read = reader.read();
  source.push("b");
  await read;
  clock.advance(15); // 30 ms in total, but only 15 since the last chunk: fires and re-arms
  assert.deepEqual(aborts, []);
  assert.equal(clock.pending, 1);
  read = reader.read();
  source.push("c");
  await read;
  source.close();
  assert.equal((await reader.read()).done, true);
  assert.deepEqual(ends, [{ kind: "end", bytes: 3 }]);
});

Deno.test("observeBody() total deadline ends a body that keeps trickling", async () => {
  const source = manualSource();
  const { observed, ends, aborts, clock } = observe(source.stream, {
    idleTimeoutMs: 10_000,
    deadlineAt: 10,
  });
  const reader = observed.getReader();
  const read = reader.read();
  source.push("a");
  await read;
  const next = reader.read();
  clock.advance(10);
  await assert.rejects(next, (error) => {
    assert.ok(error instanceof BrokenBodyError);
    assert.ok(error.cause instanceof BodyTimeoutError);
    assert.equal(error.cause.phase, "request");
    return true;
  });
  assert.equal(aborts.length, 1);
  assert.deepEqual(ends.map((e) => [e.kind, (e as { timeout?: string }).timeout]), [
    ["error", "request"],
  ]);
  reader.releaseLock();
});

Deno.test("observeBody() onEnd fires once even when cancelled after the end", async () => {
  const { observed, ends } = observe(fromChunks(["x"]));
  const reader = observed.getReader();
  assert.equal((await reader.read()).done, false);
  assert.equal((await reader.read()).done, true);
  await reader.cancel("late");
  assert.deepEqual(ends, [{ kind: "end", bytes: 1 }]);
});

Deno.test("observeBody() streamIdle counts only the upstream's silence, not a slow client's", async () => {
  const source = manualSource();
  const { observed, ends, aborts, clock } = observe(source.stream, { idleTimeoutMs: 20 });
  const reader = observed.getReader();
  let read = reader.read();
  source.push("a");
  await read;
  source.push("b"); // the upstream keeps sending; the client does not read for a while
  clock.advance(60);
  assert.deepEqual(aborts, []);
  read = reader.read();
  assert.equal(decoder.decode((await read).value), "b");
  source.close();
  assert.equal((await reader.read()).done, true);
  assert.deepEqual(ends, [{ kind: "end", bytes: 2 }]);
});
