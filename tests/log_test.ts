import assert from "node:assert/strict";
import {
  batchedStderr,
  createLogger,
  isLogLevel,
  type LoggerOptions,
  silentLogger,
} from "../src/log.ts";
import { FakeClock } from "./_helpers/fake_clock.ts";
import { concatBytes } from "../src/bytes.ts";

const NOW = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function capture(options: LoggerOptions = {}) {
  const lines: string[] = [];
  const log = createLogger({ now: () => NOW, write: (line) => lines.push(line), ...options });
  return { log, lines };
}

Deno.test("log: levels below the minimum are dropped; info is the default", () => {
  const { log, lines } = capture();
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => l.split(" ")[1]), ["INFO", "WARN", "ERROR"]);
  assert.equal(log.enabled("debug"), false);
  assert.equal(log.enabled("info"), true);

  const error = capture({ level: "error" });
  error.log.warn("w");
  error.log.error("e");
  assert.equal(error.lines.length, 1);
  assert.equal(error.log.enabled("warn"), false);

  const debug = capture({ level: "debug" });
  debug.log.debug("d");
  assert.equal(debug.lines.length, 1);
  assert.equal(debug.log.enabled("debug"), true);
});

Deno.test("log: every line ends with exactly one newline", () => {
  const text = capture();
  const json = capture({ json: true });
  for (const { log, lines } of [text, json]) {
    log.info("one", { a: 1 });
    log.error("two");
    for (const line of lines) {
      assert.ok(line.endsWith("\n"));
      assert.ok(!line.slice(0, -1).includes("\n"), line);
    }
  }
});

Deno.test("log: JSON lines carry time, level, msg and fields", () => {
  const { log, lines } = capture({ json: true });
  log.warn("hello", { forward: "main", status: 502, nested: { a: [1, 2] }, gone: undefined });
  const record = JSON.parse(lines[0]!);
  assert.deepEqual(record, {
    time: new Date(NOW).toISOString(),
    level: "warn",
    msg: "hello",
    forward: "main",
    status: 502,
    nested: { a: [1, 2] },
  });
});

Deno.test("log: JSON renders errors as name: message and bigints as decimals", () => {
  const { log, lines } = capture({ json: true });
  log.error("failed", { error: new TypeError("bad thing"), big: 12345678901234567890n });
  const record = JSON.parse(lines[0]!);
  assert.equal(record.error, "TypeError: bad thing");
  assert.equal(record.big, "12345678901234567890");
});

Deno.test("log: text format: time, padded level, message, key=value fields", () => {
  const { log, lines } = capture();
  log.info("request", { status: 200, path: "/v1/chat", gone: undefined });
  assert.equal(
    lines[0],
    `${new Date(NOW).toISOString()} INFO  request status=200 path=/v1/chat\n`,
  );
  log.warn("spaces", { msg: "two words", quote: 'a"b', obj: { x: 1 } });
  assert.equal(
    lines[1],
    `${new Date(NOW).toISOString()} WARN  spaces msg="two words" quote="a\\"b" obj="{\\"x\\":1}"\n`,
  );
  log.error("oops", { error: new Error("boom") });
  assert.match(lines[2]!, / ERROR oops error="Error: boom"\n$/);
});

Deno.test("log: child loggers add their fields; call fields win; parents are unchanged", () => {
  const { log, lines } = capture({ json: true, level: "debug" });
  const child = log.child({ log: "access", forward: "main" });
  const grandchild = child.child({ requestId: "r1" });
  child.info("a");
  grandchild.debug("b", { forward: "override" });
  log.info("c");
  const [a, b, c] = lines.map((l) => JSON.parse(l));
  assert.equal(a.log, "access");
  assert.equal(a.forward, "main");
  assert.equal(b.log, "access");
  assert.equal(b.requestId, "r1");
  assert.equal(b.forward, "override");
  assert.equal(c.log, undefined);
  assert.equal(c.forward, undefined);
  // Children share the level.
  assert.equal(child.enabled("debug"), true);
});

Deno.test("log: secrets are redacted in messages and fields, in both formats", () => {
  const secrets = ["sk-secret-token-123", "hunter2-password"];
  for (const json of [false, true]) {
    const { log, lines } = capture({ json, secrets, level: "debug" });
    log.debug("using sk-secret-token-123 now");
    log.info("fields", { auth: "Bearer sk-secret-token-123", list: ["x", "hunter2-password"] });
    log.child({ credential: "hunter2-password" }).warn("child");
    log.error("error", { error: new Error("failed with hunter2-password") });
    assert.equal(lines.length, 4);
    for (const line of lines) {
      for (const secret of secrets) assert.ok(!line.includes(secret), line);
    }
    assert.ok(lines[0]!.includes("[REDACTED]"));
    if (json) { for (const line of lines) JSON.parse(line); // still valid JSON
     }
  }
});

Deno.test("log: a secret repeated in one line is redacted every time", () => {
  const { log, lines } = capture({ secrets: ["abcdefgh"] });
  log.info("abcdefgh abcdefgh", { x: "abcdefghabcdefgh" });
  assert.ok(!lines[0]!.includes("abcdefgh"), lines[0]);
  assert.equal(lines[0]!.split("[REDACTED]").length - 1, 4);
});

Deno.test("log: very short secrets are not used (they would garble ordinary words)", () => {
  const { log, lines } = capture({ secrets: ["a", "ab", "abc", "", "abcd"] });
  log.info("a cat is abcd");
  assert.equal(lines[0]!.endsWith("a cat is [REDACTED]\n"), true, lines[0]);
});

Deno.test("log: a Set of secrets is read live (a reload adds secrets)", () => {
  const secrets = new Set(["first-secret"]);
  const { log, lines } = capture({ secrets });
  log.info("first-secret second-secret");
  assert.ok(!lines[0]!.includes("first-secret"));
  assert.ok(lines[0]!.includes("second-secret"));
  secrets.add("second-secret");
  log.child({ x: 1 }).info("first-secret second-secret");
  assert.ok(!lines[1]!.includes("first-secret"), lines[1]);
  assert.ok(!lines[1]!.includes("second-secret"), lines[1]);
});

Deno.test("log: other iterables are read once", () => {
  const secrets = ["first-secret"];
  const { log, lines } = capture({ secrets });
  secrets.push("second-secret");
  log.info("first-secret second-secret");
  assert.ok(!lines[0]!.includes("first-secret"));
  // A one-shot generator works too (it is not read again).
  const once = capture({
    secrets: (function* () {
      yield "generated-secret";
    })(),
  });
  once.log.info("generated-secret");
  once.log.info("generated-secret");
  for (const line of once.lines) assert.ok(!line.includes("generated-secret"), line);
});

Deno.test("log: silentLogger writes nothing and says every level is off", () => {
  silentLogger.info("x");
  silentLogger.child({ a: 1 }).error("y");
  assert.equal(silentLogger.enabled("error"), false);
  assert.equal(silentLogger.child({}), silentLogger);
});

Deno.test("log: isLogLevel", () => {
  for (const level of ["debug", "info", "warn", "error"]) assert.ok(isLogLevel(level));
  for (const level of ["trace", "INFO", "", "warning"]) assert.ok(!isLogLevel(level));
});

Deno.test("createLogger() redacts a secret with quotes or backslashes in JSON lines too", () => {
  const lines: string[] = [];
  const log = createLogger({
    json: true,
    secrets: ['p"a\\ss-word'],
    write: (line) => lines.push(line),
  });
  log.info("x", { value: 'p"a\\ss-word' });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes('p\\"a\\\\ss-word'), lines[0]);
  assert.match(lines[0]!, /\[REDACTED\]/);
});

Deno.test("batchedStderr(): start-up lines go out at once; then one write per batch", () => {
  const writes: string[] = [];
  const decoder = new TextDecoder();
  const clock = new FakeClock();
  const sink = batchedStderr({
    flushMs: 5,
    writeSync: (bytes) => {
      writes.push(decoder.decode(bytes));
      return bytes.byteLength;
    },
    clock,
  });
  sink.write("a\n");
  sink.write("b\n");
  assert.deepEqual(writes, ["a\n", "b\n"]);
  assert.equal(clock.pending, 0, "no timer armed before batching starts");
  sink.startBatching();
  sink.write("c\n");
  sink.write("d\n");
  assert.deepEqual(writes, ["a\n", "b\n"]);
  assert.equal(clock.unrefPending, 1, "the flush timer never keeps the process alive");
  clock.advance(4);
  assert.deepEqual(writes, ["a\n", "b\n"]);
  clock.advance(1);
  assert.deepEqual(writes, ["a\n", "b\n", "c\nd\n"]);
  // A full batch goes out without waiting.
  sink.write("x".repeat(70_000));
  assert.equal(writes.length, 4);
  sink.write("e\n");
  sink.flush();
  assert.deepEqual(writes.slice(4), ["e\n"]);
  assert.equal(clock.pending, 0);
});

Deno.test("batchedStderr(): batches encoded into a reused buffer stay exact (short after long, non-ASCII, oversized)", () => {
  const writes: Uint8Array[] = [];
  const sink = batchedStderr({
    writeSync: (bytes) => {
      // Partial writes: the rest must follow from the same bytes.
      const n = Math.min(bytes.byteLength, 7);
      writes.push(bytes.slice(0, n));
      return n;
    },
    clock: new FakeClock(),
  });
  const joined = () => new TextDecoder().decode(concatBytes(writes.splice(0)));
  sink.startBatching();
  sink.write("a long first line\n");
  sink.flush();
  assert.equal(joined(), "a long first line\n");
  sink.write("ß€😀\n");
  sink.flush();
  assert.equal(joined(), "ß€😀\n", "nothing of the earlier batch, multi-byte characters whole");
  const huge = "€".repeat(80_000) + "\n"; // more than the reused buffer holds once encoded
  sink.write(huge);
  assert.equal(joined(), huge);
});

/** An asynchronous writer the test completes by hand, recording what it was given. */
function manualWriter() {
  const written: string[] = [];
  const waiting: (() => void)[] = [];
  return {
    written,
    /** Completes the oldest write in flight. */
    finishOne: async () => {
      waiting.shift()?.();
      await new Promise((resolve) => setTimeout(resolve, 0));
    },
    get inFlight() {
      return waiting.length;
    },
    write: (bytes: Uint8Array) =>
      new Promise<number>((resolve) => {
        // Copied now: the sink may reuse its buffer only after the write completes.
        const text = new TextDecoder().decode(bytes);
        waiting.push(() => {
          written.push(text);
          resolve(bytes.byteLength);
        });
      }),
  };
}

Deno.test("batchedStderr(): batches go out asynchronously, one at a time, in order", async () => {
  const writer = manualWriter();
  const clock = new FakeClock();
  const sink = batchedStderr({ write: writer.write, writeSync: () => 0, clock, flushMs: 5 });
  sink.startBatching();
  sink.write("a\n");
  clock.advance(5);
  assert.equal(writer.inFlight, 1);
  sink.write("b\n");
  sink.write("c\n");
  clock.advance(5);
  assert.equal(writer.inFlight, 1, "the next batch waits for the write in flight");
  await writer.finishOne();
  assert.equal(writer.inFlight, 1, "it starts when that write ends");
  await writer.finishOne();
  assert.deepEqual(writer.written, ["a\n", "b\nc\n"]);
});

Deno.test("batchedStderr(): past maxPendingChars behind a slow write, lines are dropped and counted", async () => {
  const writer = manualWriter();
  const clock = new FakeClock();
  const drops: number[] = [];
  const sink = batchedStderr({
    write: writer.write,
    writeSync: () => 0,
    clock,
    flushMs: 5,
    maxPendingChars: 11,
    onDropped: (count) => drops.push(count),
  });
  sink.startBatching();
  sink.write("first\n");
  clock.advance(5);
  for (const line of ["12345\n", "6789\n", "dropped\n", "dropped\n"]) sink.write(line);
  await writer.finishOne();
  assert.deepEqual(drops, [2]);
  await writer.finishOne();
  assert.deepEqual(writer.written, ["first\n", "12345\n6789\n"]);
});

Deno.test("batchedStderr(): flush() during a write does not touch the bytes in flight; drain() waits", async () => {
  const writer = manualWriter();
  const synced: string[] = [];
  const sink = batchedStderr({
    write: writer.write,
    writeSync: (bytes) => {
      synced.push(new TextDecoder().decode(bytes));
      return bytes.byteLength;
    },
    clock: new FakeClock(),
  });
  sink.startBatching();
  sink.write("x".repeat(70_000) + "\n"); // a full batch: written at once, asynchronously
  assert.equal(writer.inFlight, 1);
  sink.write("later\n");
  sink.flush();
  assert.deepEqual(synced, ["later\n"]);
  const drained = sink.drain();
  await writer.finishOne();
  await drained;
  assert.equal(writer.written[0], "x".repeat(70_000) + "\n");
});
