import assert from "node:assert/strict";
import { SseEventCounter, TokenTimer } from "../../src/stream/token_timing.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

/** Data events counted over `text` fed as the given pieces (cut at these offsets). */
function countSplit(text: string, cuts: number[]): number {
  const counter = new SseEventCounter();
  const all = bytes(text);
  let total = 0;
  let from = 0;
  for (const cut of [...cuts, all.length]) {
    total += counter.chunk(all.subarray(from, cut));
    from = cut;
  }
  return total;
}

/** A stream of three data events, a comment, an event without data and [DONE]. */
function stream(eol: string): string {
  return [
    ": keep-alive comment",
    "",
    'data: {"choices":[{"delta":{"role":"assistant"}}]}',
    "",
    "event: ping",
    "",
    "event: message",
    'data: {"choices":[{"delta":{"content":"Hi"}}]}',
    "",
    "id: 7",
    "retry: 10",
    "",
    "data:{",
    'data:"multi":1}',
    "",
    "data: [DONE]",
    "",
    "",
  ].join(eol);
}

for (const [name, eol] of [["LF", "\n"], ["CRLF", "\r\n"], ["CR", "\r"]]) {
  Deno.test(`SseEventCounter counts data events, not comments, fieldless events or [DONE] (${name})`, () => {
    const text = stream(eol!);
    assert.equal(countSplit(text, []), 3);
  });

  Deno.test(`SseEventCounter counts alike at every split of one chunk into two (${name})`, () => {
    const text = stream(eol!);
    const length = text.length;
    for (let cut = 0; cut <= length; cut++) {
      assert.equal(countSplit(text, [cut]), 3, `cut at ${cut}`);
    }
  });
}

Deno.test("SseEventCounter counts alike when fed one byte at a time, in mixed line ends", () => {
  const text = "data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: [DONE]\r\n\n";
  const length = text.length;
  assert.equal(countSplit(text, []), 3);
  assert.equal(countSplit(text, Array.from({ length }, (_, i) => i)), 3);
});

Deno.test("SseEventCounter tells a CRLF split across chunks from two line ends", () => {
  const counter = new SseEventCounter();
  // `\r` + `\n` is one line end: no blank line yet.
  assert.equal(counter.chunk(bytes("data: x\r")), 0);
  assert.equal(counter.chunk(bytes("\n")), 0);
  // A CR ends a line on its own: this one is the blank line; the LF after it completes it.
  assert.equal(counter.chunk(bytes("\r")), 1);
  assert.equal(counter.chunk(bytes("\n")), 0);
  // An empty chunk between the halves keeps the held CR.
  assert.equal(counter.chunk(bytes("data: y\r")), 0);
  assert.equal(counter.chunk(new Uint8Array(0)), 0);
  assert.equal(counter.chunk(bytes("\n\r\n")), 1);
});

Deno.test("SseEventCounter reads `data` fields as SSE does: bare, without space, [DONE] exactly", () => {
  const cases: [string, number][] = [
    ["data\n\n", 1], // a bare field name is a data line with an empty value
    ["data:\n\n", 1],
    ["data: \n\n", 1],
    ["data:[DONE]\n\n", 0], // without the space it is still the marker
    ["data: [DONE]\n\n", 0],
    ["data:  [DONE]\n\n", 1], // only one space is stripped: the value is " [DONE]"
    ["data: [DONE] \n\n", 1],
    ["data: [DONE]x\n\n", 1],
    ["data: [DON\n\n", 1],
    ["data: [DONE]\ndata: more\n\n", 1], // the data is "[DONE]\nmore"
    ["data: x\ndata: [DONE]\n\n", 1],
    ["datax: 1\n\n", 0], // another field
    ["dat\n\n", 0],
    [":data: 1\n\n", 0], // a comment
    [" data: 1\n\n", 0], // a field name does not start with a space
    ["event: x\nid: 1\n\n", 0],
    ["data: unfinished\n", 0], // no blank line yet: not dispatched
    ["\n\n\n\n", 0],
  ];
  for (const [text, expected] of cases) {
    assert.equal(countSplit(text, []), expected, JSON.stringify(text));
    for (let cut = 0; cut <= text.length; cut++) {
      assert.equal(countSplit(text, [cut]), expected, `${JSON.stringify(text)} cut at ${cut}`);
    }
  }
});

Deno.test("SseEventCounter skips the rest of long data lines", () => {
  const counter = new SseEventCounter();
  const long = `data: ${"x".repeat(100_000)}`;
  assert.equal(counter.chunk(bytes(`${long}\n\n${long}\n`)), 1);
  assert.equal(counter.chunk(bytes("\n")), 1);
});

/** Records observations (seconds) per sink. */
function recorder() {
  const first: number[] = [];
  const inter: number[] = [];
  return {
    first,
    inter,
    sink: {
      firstToken: { observe: (s: number) => void first.push(s) },
      interToken: { observe: (s: number) => void inter.push(s) },
    },
  };
}

Deno.test("TokenTimer observes the time to the first data event, then the gaps between events", () => {
  const clock = new FakeClock();
  const { first, inter, sink } = recorder();
  // Sent 120 ms ago: the headers came then (firstByteMs) and the answer is passed on now.
  const timer = new TokenTimer(sink, { now: () => clock.now(), sentAt: clock.now() - 120 });
  clock.advance(30);
  timer.chunk(bytes(": comment\n\n")); // no data: nothing
  clock.advance(50);
  timer.chunk(bytes("data: a\n\n"));
  assert.deepEqual(first, [0.2]);
  assert.deepEqual(inter, []);
  clock.advance(25);
  timer.chunk(bytes("data: b\n")); // not ended yet
  clock.advance(15);
  timer.chunk(bytes("\n"));
  assert.deepEqual(inter, [0.04]);
  clock.advance(10);
  timer.chunk(bytes("data: [DONE]\n\n"));
  assert.deepEqual(first, [0.2]);
  assert.deepEqual(inter, [0.04], "[DONE] is not a token");
});

Deno.test("TokenTimer counts events read together: the first gets the gap, the others 0", () => {
  const clock = new FakeClock();
  const { first, inter, sink } = recorder();
  const timer = new TokenTimer(sink, { now: () => clock.now(), sentAt: clock.now() });
  clock.advance(100);
  timer.chunk(bytes("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4"));
  assert.deepEqual(first, [0.1]);
  assert.deepEqual(inter, [0, 0]);
  clock.advance(30);
  timer.chunk(bytes("\n\ndata: 5\n\ndata: [DONE]\n\n"));
  assert.deepEqual(inter, [0, 0, 0.03, 0]);
  // One observation per event after the first; the sum is the time from the first to the last.
  assert.equal(inter.length, 4);
  assert.equal(inter.reduce((a, b) => a + b, 0), 0.03);
});

Deno.test("TokenTimer reads the clock only for chunks that end a data event", () => {
  let reads = 0;
  const { sink } = recorder();
  const timer = new TokenTimer(sink, { now: () => (reads++, 0), sentAt: 0 });
  timer.chunk(bytes(": ping\n\n"));
  timer.chunk(bytes("data: part"));
  timer.chunk(bytes("ial\n"));
  assert.equal(reads, 0);
  timer.chunk(bytes("\n\n"));
  assert.equal(reads, 1);
});

Deno.test("TokenTimer recognises events alike when a chunk splits a multi-byte character or a control byte is in a line", () => {
  const text = "data: \u00e9t\u00e9 \u{1F600}\t\f\n\ndata: \u2026\r\n\r\ndata: [DONE]\n\n";
  const all = bytes(text);
  for (let cut = 0; cut <= all.length; cut++) {
    const { first, inter, sink } = recorder();
    const timer = new TokenTimer(sink, { now: () => 0, sentAt: 0 });
    timer.chunk(all.subarray(0, cut));
    timer.chunk(all.subarray(cut));
    assert.equal(first.length + inter.length, 2, `cut at ${cut}`);
  }
});
