import assert from "node:assert/strict";
import { ChunkedDecoder } from "../../../src/transport/http1/chunked.ts";
import { UpstreamProtocolError } from "../../../src/transport/http1/head.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What decoding `input` delivered in pieces cut at `cuts` gives. */
interface Decoded {
  payload: string;
  done: boolean;
  /** Where the decoder stopped, as an index into the whole input. */
  stoppedAt: number;
}

/**
 * Feeds `input` to a fresh decoder in the pieces that `cuts` (increasing indices) delimit, the
 * way a connection does: undecoded bytes stay in the buffer and more are appended after them.
 */
function decodeIn(input: Uint8Array, cuts: number[]): Decoded {
  const chunked = new ChunkedDecoder();
  const out: Uint8Array[] = [];
  let payload = "";
  let start = 0;
  for (const end of [...cuts, input.length]) {
    if (chunked.done) break;
    // A fresh copy each time: the decoder's views must be used before the buffer changes.
    const buf = input.slice(0, end);
    start = chunked.decode(buf, start, end, out);
    assert.ok(start >= 0 && start <= end, `stopped at ${start} of ${end}`);
    for (const part of out.splice(0)) payload += decoder.decode(part, { stream: true });
  }
  return { payload, done: chunked.done, stoppedAt: start };
}

function decodeWhole(text: string): Decoded {
  return decodeIn(encoder.encode(text), []);
}

/** Decoding an input that must fail, with its bytes fed whole. */
function decodeThrows(text: string): void {
  assert.throws(() => decodeWhole(text), UpstreamProtocolError, JSON.stringify(text.slice(0, 80)));
}

/**
 * Decoding an input that must fail: fed whole, one byte at a time, and cut at every point
 * (the error is found whatever the split).
 */
function decodeThrowsAnySplit(text: string): void {
  decodeThrows(text);
  const input = encoder.encode(text);
  const what = JSON.stringify(text.slice(0, 80));
  const bytewise = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
  assert.throws(() => decodeIn(input, bytewise), UpstreamProtocolError, `${what} byte by byte`);
  for (let cut = 1; cut < input.length; cut++) {
    assert.throws(() => decodeIn(input, [cut]), UpstreamProtocolError, `${what} cut at ${cut}`);
  }
}

const SAMPLE = "5\r\nhello\r\n7;name=value\r\n, world\r\nA\r\n0123456789\r\n0\r\n\r\n";
const SAMPLE_PAYLOAD = "hello, world0123456789";

Deno.test("chunked: a body fed whole", () => {
  assert.deepEqual(decodeWhole(SAMPLE), {
    payload: SAMPLE_PAYLOAD,
    done: true,
    stoppedAt: SAMPLE.length,
  });
});

Deno.test("chunked: a body fed one byte at a time", () => {
  const input = encoder.encode(SAMPLE);
  const cuts = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
  assert.deepEqual(decodeIn(input, cuts), {
    payload: SAMPLE_PAYLOAD,
    done: true,
    stoppedAt: input.length,
  });
});

Deno.test("chunked: every split point (and every pair of them) gives the same payload", () => {
  const bodies = [
    SAMPLE,
    '1;a=b;c\r\nx\r\n0;last;q="x;\\"y"\r\nTrailer: one\r\nOther: two\r\n\r\n',
    "00000F ;x\r\n0123456789abcde\r\n0\r\n\r\n",
    "2\r\n\r\n\r\n0\r\n\r\n", // payload that looks like line endings
  ];
  for (const body of bodies) {
    const input = encoder.encode(body);
    const expected = decodeIn(input, []);
    assert.equal(expected.done, true, body);
    assert.equal(expected.stoppedAt, input.length, body);
    for (let cut = 0; cut <= input.length; cut++) {
      assert.deepEqual(decodeIn(input, [cut]), expected, `${JSON.stringify(body)} cut at ${cut}`);
    }
    for (let a = 1; a < input.length; a++) {
      for (let b = a; b < input.length; b++) {
        assert.deepEqual(
          decodeIn(input, [a, b]),
          expected,
          `${JSON.stringify(body)} cut at ${a}, ${b}`,
        );
      }
    }
  }
});

Deno.test("chunked: a large chunk decoded across many reads", () => {
  const data = "0123456789".repeat(1000);
  const input = encoder.encode(`${data.length.toString(16)}\r\n${data}\r\n0\r\n\r\n`);
  const cuts: number[] = [];
  for (let at = 7; at < input.length; at += 97) cuts.push(at);
  assert.deepEqual(decodeIn(input, cuts), { payload: data, done: true, stoppedAt: input.length });
});

Deno.test("chunked: the output parts are views into the input", () => {
  const input = encoder.encode("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  const out: Uint8Array[] = [];
  const chunked = new ChunkedDecoder();
  assert.equal(chunked.decode(input, 0, input.length, out), input.length);
  assert.deepEqual(out.map((part) => decoder.decode(part)), ["abc", "de"]);
  assert.equal(out[0]!.buffer, input.buffer);
});

Deno.test("chunked: valid chunk extensions are ignored", () => {
  const body = '4;ext\r\nabcd\r\n3 ;a=1;b="q;\\"x\t\u00e9"\r\nefg\r\n2\t;x\r\nhi\r\n' +
    "0;end=1 ;e2=!#$%&'*+-.^_`|~\r\n\r\n";
  assert.deepEqual(decodeWhole(body), {
    payload: "abcdefghi",
    done: true,
    stoppedAt: encoder.encode(body).length, // the é (obs-text in a quoted string) is 2 bytes
  });
});

Deno.test("chunked: trailer fields are skipped", () => {
  const body = "3\r\nabc\r\n0\r\nExpires: never\r\nX-Checksum: 1234\r\n\r\n";
  assert.deepEqual(decodeWhole(body), { payload: "abc", done: true, stoppedAt: body.length });
});

Deno.test("chunked: upper- and lower-case hex sizes", () => {
  const data = "x".repeat(0xab);
  for (const size of ["AB", "ab", "aB", "00Ab"]) {
    const body = `${size}\r\n${data}\r\n0\r\n\r\n`;
    assert.deepEqual(
      decodeWhole(body),
      { payload: data, done: true, stoppedAt: body.length },
      size,
    );
  }
  const big = "y".repeat(0xFACE);
  const body = `FACE\r\n${big}\r\n0\r\n\r\n`;
  assert.equal(decodeWhole(body).payload.length, 0xface);
});

Deno.test("chunked: a bare LF ends no line: size line, chunk data, last chunk, trailers", () => {
  for (
    const body of [
      "5\nhello\r\n0\r\n\r\n",
      "5;a=b\nhello\r\n0\r\n\r\n",
      "5\r\nhello\n0\r\n\r\n",
      "5\r\nhello\r\n0\n\r\n",
      "5\r\nhello\r\n0\r\n\n",
      "5\r\nhello\r\n0\r\nTrailer: x\n\r\n",
      "5\nhello\n1\n!\n0\nTrailer: x\n\n",
    ]
  ) {
    decodeThrowsAnySplit(body);
  }
});

Deno.test("chunked: a bare CR in the framing is refused", () => {
  for (
    const body of [
      "5\rhello\r\n0\r\n\r\n",
      "5\r\r\nhello\r\n0\r\n\r\n",
      "5;a\rb\r\nhello\r\n0\r\n\r\n",
      "5\r\nhello\r\r\n0\r\n\r\n",
      "5\r\nhello\r\n0\r\nT: a\rb\r\n\r\n",
      "5\r\nhello\r\n0\r\n\r\r\n",
    ]
  ) {
    decodeThrowsAnySplit(body);
  }
});

Deno.test("chunked: nothing but BWS and extensions after the size: trailing whitespace is refused", () => {
  for (const line of ["25  ", "25 ", "25\t", "5;a ", "5;a=b\t", '5;a="b" ']) {
    decodeThrowsAnySplit(`${line}\r\nhello\r\n0\r\n\r\n`);
  }
});

Deno.test("chunked: malformed chunk extensions are refused", () => {
  for (
    const ext of [
      ";", // empty (`2;`)
      ";a;",
      ";;a",
      "; a", // whitespace only before `;`
      ";a =b",
      ";a= b",
      ";a=",
      ';a="b', // unbalanced quote
      ';a="b\\"',
      ';a=b"c"',
      ';a="b"c',
      ";a\u0001",
      ";a=b\u0000",
      ';a="b\u0001"',
      ';a="b\u007f"',
      ";a=b\u007f",
      ";(a)",
      ";a=b=c",
      ";a,b",
      " a",
    ]
  ) {
    decodeThrowsAnySplit(`5${ext}\r\nhello\r\n0\r\n\r\n`);
  }
});

Deno.test("chunked: malformed trailer fields are refused", () => {
  for (const line of [" folded", "no colon", ": empty", "Name : x", "X-A: b\u0001", "X(A): b"]) {
    decodeThrowsAnySplit(`5\r\nhello\r\n0\r\n${line}\r\n\r\n`);
  }
});

Deno.test("chunked: a size that is not hex is an error", () => {
  for (const size of ["g", "-1", "+5", "0x5", " 5", ";ext", "", "5 5", "5\u00e9", "\t5"]) {
    decodeThrows(`${size}\r\nhello\r\n0\r\n\r\n`);
  }
  // In a later chunk, too.
  decodeThrows("1\r\na\r\nz\r\n");
});

Deno.test("chunked: data not followed by a line end is an error", () => {
  decodeThrows("5\r\nhelloX\r\n0\r\n\r\n");
  decodeThrows("5\r\nhello\rX0\r\n\r\n");
  decodeThrows("3\r\nhello\r\n0\r\n\r\n"); // size shorter than the data
  // What follows the data would parse as a size line: still an error, and the right one.
  for (
    const body of ["5\r\nhelloA\r\n0\r\n\r\n", "5\r\nhello0\r\n\r\n", "2\r\nhello\r\n0\r\n\r\n"]
  ) {
    assert.throws(() => decodeWhole(body), /chunk not followed by CRLF/, JSON.stringify(body));
  }
  // Split right after the CR: found once the next byte arrives.
  const input = encoder.encode("5\r\nhello\rX");
  assert.throws(() => decodeIn(input, [input.length - 1]), UpstreamProtocolError);
});

Deno.test("chunked: a size with more than 12 significant hex digits is an error", () => {
  // 12 digits is the limit; leading zeros do not count.
  for (const size of ["000000000001", "0000000000000000001"]) {
    const decoder = new ChunkedDecoder();
    const input = encoder.encode(`${size}\r\nx\r\n0\r\n\r\n`);
    assert.equal(decoder.decode(input, 0, input.length, []), input.length, size);
    assert.equal(decoder.done, true);
  }
  decodeThrows("1000000000000\r\nx\r\n0\r\n\r\n");
  decodeThrows("FFFFFFFFFFFFFFFF\r\n");
  decodeThrows(`${"1".repeat(40)}\r\n`);
});

Deno.test("chunked: an over-long size line is an error while it is still incomplete", () => {
  // A size line with no line end yet, past the 4096-byte limit.
  const input = encoder.encode(`5;${"e".repeat(5000)}`);
  assert.throws(
    () => new ChunkedDecoder().decode(input, 0, input.length, []),
    UpstreamProtocolError,
  );
  // Arriving in small pieces, the decoder fails once the limit is passed, not at the end.
  const pieces: number[] = [];
  for (let at = 100; at < input.length; at += 100) pieces.push(at);
  assert.throws(() => decodeIn(input, pieces), UpstreamProtocolError);
  // Up to the limit, an incomplete line just waits.
  const short = encoder.encode(`5;${"e".repeat(4000)}`);
  assert.equal(new ChunkedDecoder().decode(short, 0, short.length, []), 0);
});

Deno.test({
  name: "chunked: an over-long size line is an error even when it arrives complete",
  fn() {
    decodeThrows(`5;${"e".repeat(5000)}\r\nhello\r\n0\r\n\r\n`);
  },
});

Deno.test("chunked: done only after the final blank line", () => {
  const input = encoder.encode("3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
  const blankLine = input.length - 2;
  for (let end = 0; end < input.length; end++) {
    const decoded = decodeIn(input.slice(0, end), []);
    assert.equal(decoded.done, false, `done after ${end} bytes`);
  }
  assert.equal(decodeIn(input.slice(0, blankLine + 1), []).done, false);
  assert.equal(decodeIn(input, []).done, true);
  // Without trailers: the last chunk alone is not the end.
  const plain = encoder.encode("0\r\n");
  const chunked = new ChunkedDecoder();
  assert.equal(chunked.decode(plain, 0, plain.length, []), plain.length);
  assert.equal(chunked.done, false);
  const blank = encoder.encode("\r\n");
  assert.equal(chunked.decode(blank, 0, blank.length, []), blank.length);
  assert.equal(chunked.done, true);
});

Deno.test("chunked: bytes after the end are not consumed", () => {
  for (const body of ["3\r\nabc\r\n0\r\n\r\n", "3\r\nabc\r\n0\r\nT: x\r\n\r\n"]) {
    const next = "HTTP/1.1 200 OK\r\n\r\n";
    const input = encoder.encode(body + next);
    const out: Uint8Array[] = [];
    const chunked = new ChunkedDecoder();
    assert.equal(chunked.decode(input, 0, input.length, out), body.length, body);
    assert.equal(chunked.done, true);
    assert.deepEqual(out.map((part) => decoder.decode(part)), ["abc"]);
    // Once done, further calls consume nothing.
    assert.equal(chunked.decode(input, body.length, input.length, out), body.length);
    assert.equal(out.length, 1);
  }
  // The same whatever the split.
  const input = encoder.encode("3\r\nabc\r\n0\r\n\r\nEXTRA");
  for (let cut = 0; cut <= input.length; cut++) {
    assert.equal(decodeIn(input, [cut]).stoppedAt, input.length - "EXTRA".length, `cut at ${cut}`);
  }
});

Deno.test("chunked: decoding respects the start offset", () => {
  const prefix = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
  const input = encoder.encode(`${prefix}2\r\nok\r\n0\r\n\r\n`);
  const out: Uint8Array[] = [];
  const chunked = new ChunkedDecoder();
  assert.equal(chunked.decode(input, prefix.length, input.length, out), input.length);
  assert.deepEqual(out.map((part) => decoder.decode(part)), ["ok"]);
});

Deno.test("chunked: an empty range returns its start", () => {
  const chunked = new ChunkedDecoder();
  assert.equal(chunked.decode(new Uint8Array(8), 5, 5, []), 5);
  assert.equal(chunked.done, false);
});

Deno.test("chunked: a trailer section over 32 KiB is refused, whole or in pieces", () => {
  decodeThrows(`3\r\nabc\r\n0\r\nx-big: ${"t".repeat(40_000)}\r\n\r\n`);
  // Cut inside the long line: refused before the reader's buffer would have to grow past it.
  const decoder = new ChunkedDecoder();
  const bytes = new TextEncoder().encode(`3\r\nabc\r\n0\r\nx-big: ${"t".repeat(40_000)}`);
  assert.throws(() => decoder.decode(bytes, 0, bytes.length, []), UpstreamProtocolError);
});
