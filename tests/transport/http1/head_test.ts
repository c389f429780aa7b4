import assert from "node:assert/strict";
import {
  encodeHead,
  findHeadEnd,
  latin1,
  parseResponseHead,
  requestHead,
  responseFraming,
  type ResponseHead,
  reusable,
  skipEmptyLines,
  UpstreamProtocolError,
} from "../../../src/transport/http1/head.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** A parsed head from its status line and header lines. */
function head(statusLine: string, ...lines: string[]): ResponseHead {
  return parseResponseHead([statusLine, ...lines, "", ""].join("\r\n"));
}

// --- requestHead -------------------------------------------------------------------------

Deno.test("requestHead: request line, host first, headers in order, blank line", () => {
  assert.equal(
    requestHead("GET", "/v1/models?x=1", {
      host: "example:8080",
      headers: { accept: "*/*", "x-a": "b" },
      bodyLength: null,
      keepAlive: true,
    }),
    "GET /v1/models?x=1 HTTP/1.1\r\nhost: example:8080\r\naccept: */*\r\nx-a: b\r\n\r\n",
  );
});

Deno.test("requestHead: content-length for a body, after the headers", () => {
  assert.equal(
    requestHead("POST", "/p", {
      host: "h",
      headers: { "content-type": "application/json" },
      bodyLength: 12,
      keepAlive: true,
    }),
    "POST /p HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n",
  );
  // An empty body still says so.
  assert.equal(
    requestHead("PUT", "/p", { host: "h", headers: {}, bodyLength: 0, keepAlive: true }),
    "PUT /p HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
  );
});

Deno.test("requestHead: content-length: 0 for POST/PUT/PATCH without a body, none for others", () => {
  for (const method of ["POST", "PUT", "PATCH"]) {
    assert.equal(
      requestHead(method, "/", { host: "h", headers: {}, bodyLength: null, keepAlive: true }),
      `${method} / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n`,
    );
  }
  for (const method of ["GET", "HEAD", "DELETE", "OPTIONS"]) {
    const text = requestHead(method, "/", {
      host: "h",
      headers: {},
      bodyLength: null,
      keepAlive: true,
    });
    assert.equal(text, `${method} / HTTP/1.1\r\nhost: h\r\n\r\n`);
    assert.doesNotMatch(text, /content-length/);
  }
});

Deno.test("requestHead: connection: close only when keepAlive is false", () => {
  assert.equal(
    requestHead("GET", "/", { host: "h", headers: {}, bodyLength: null, keepAlive: false }),
    "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
  );
  assert.equal(
    requestHead("POST", "/", { host: "h", headers: {}, bodyLength: 3, keepAlive: false }),
    "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nconnection: close\r\n\r\n",
  );
  assert.doesNotMatch(
    requestHead("GET", "/", { host: "h", headers: {}, bodyLength: null, keepAlive: true }),
    /connection/,
  );
});

// --- encodeHead --------------------------------------------------------------------------

Deno.test("encodeHead: ASCII is encoded as is", () => {
  const text = "GET / HTTP/1.1\r\nhost: h\r\n\r\n";
  assert.deepEqual(encodeHead(text), bytes(text));
});

Deno.test("encodeHead: Latin-1 characters above 0x7f stay single bytes", () => {
  const encoded = encodeHead("x: caf\u00e9\u00ff\u0080\r\n");
  assert.deepEqual(
    encoded,
    new Uint8Array([0x78, 0x3a, 0x20, 0x63, 0x61, 0x66, 0xe9, 0xff, 0x80, 0x0d, 0x0a]),
  );
  // Round trip through latin1().
  assert.equal(latin1(encoded), "x: caf\u00e9\u00ff\u0080\r\n");
});

Deno.test("encodeHead: a character above 0xff throws", () => {
  assert.throws(() => encodeHead("x: \u0100\r\n"), TypeError);
  assert.throws(() => encodeHead("x: caf\u00e9 \u20ac\r\n"), TypeError);
  assert.throws(() => encodeHead("x: \u{1f600}\r\n"), TypeError);
});

Deno.test("encodeHead: the body follows the head in the same buffer, on both paths", () => {
  const body = bytes('{"a":1}');
  const ascii = "POST / HTTP/1.1\r\ncontent-length: 7\r\n\r\n";
  assert.deepEqual(encodeHead(ascii, body), bytes(ascii + '{"a":1}'));
  const encoded = encodeHead("x: caf\u00e9\r\n\r\n", body);
  assert.deepEqual(
    encoded.subarray(0, 9),
    new Uint8Array([0x78, 0x3a, 0x20, 0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a]),
  );
  assert.deepEqual(encoded.subarray(11), body);
  assert.equal(encoded.byteLength, 11 + body.byteLength);
});

Deno.test("latin1: ASCII and Latin-1 heads decode one byte per character", () => {
  assert.equal(latin1(bytes("HTTP/1.1 200 OK\r\n")), "HTTP/1.1 200 OK\r\n");
  assert.equal(latin1(new Uint8Array([0x61, 0xe9, 0x80, 0xff])), "a\u00e9\u0080\u00ff");
});

Deno.test("latin1: decodes large inputs one byte per character", () => {
  const input = new Uint8Array(20_000).map((_, i) => i % 256);
  const text = latin1(input);
  assert.equal(text.length, input.length);
  for (let i = 0; i < input.length; i += 997) assert.equal(text.charCodeAt(i), input[i]);
});

// --- findHeadEnd -------------------------------------------------------------------------

Deno.test("findHeadEnd: CRLF head ends just past the blank line", () => {
  const text = "HTTP/1.1 200 OK\r\na: b\r\n\r\nbody";
  const buf = bytes(text);
  assert.equal(findHeadEnd(buf, 0, buf.length), text.indexOf("body"));
});

Deno.test("findHeadEnd: a bare LF anywhere in the head is refused, found as soon as it arrives", () => {
  for (
    const text of [
      "HTTP/1.1 200 OK\na: b\n\nbody",
      "HTTP/1.1 200 OK\r\na: b\r\n\nbody", // ended by CRLF LF
      "HTTP/1.1 200 OK\r\na: b\n\r\nbody",
      // A field line another parser reads as one (its value holding an LF) hides a second.
      "HTTP/1.1 200 OK\r\nx-a: 1\ncontent-length: 4\r\n\r\nbody",
      "HTTP/1.1 200 OK\n\r\nbody",
    ]
  ) {
    const buf = bytes(text);
    const bareLf = text.search(/(?<!\r)\n/);
    assert.throws(
      () => findHeadEnd(buf, 0, buf.length),
      UpstreamProtocolError,
      JSON.stringify(text),
    );
    for (let cut = 0; cut < buf.length; cut++) {
      if (cut <= bareLf) assert.equal(findHeadEnd(buf, 0, cut), -1, `cut at ${cut}`);
      else assert.throws(() => findHeadEnd(buf, 0, cut), UpstreamProtocolError, `cut at ${cut}`);
    }
  }
});

Deno.test("findHeadEnd: a head cut at any position is incomplete", () => {
  for (
    const text of ["HTTP/1.1 200 OK\r\na: b\r\nc: d\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"]
  ) {
    const buf = bytes(text);
    assert.equal(findHeadEnd(buf, 0, buf.length), buf.length);
    for (let cut = 0; cut < buf.length; cut++) {
      assert.equal(findHeadEnd(buf, 0, cut), -1, `cut at ${cut} of ${JSON.stringify(text)}`);
    }
  }
});

Deno.test("findHeadEnd: resuming from where the last scan stopped finds the same end", () => {
  const text = "HTTP/1.1 200 OK\r\na: b\r\n\r\nbody";
  const buf = bytes(text);
  for (let cut = 0; cut <= buf.length; cut++) {
    const first = findHeadEnd(buf, 0, cut);
    const found = first !== -1 ? first : findHeadEnd(buf, 0, buf.length, cut);
    assert.equal(found, text.indexOf("body"), `cut at ${cut}`);
  }
  // A bare LF right after the cut is still seen against the byte before it.
  const bare = bytes("HTTP/1.1 200 OK\r\na: b\n\r\n");
  const lf = "HTTP/1.1 200 OK\r\na: b".length;
  assert.equal(findHeadEnd(bare, 0, lf), -1);
  assert.throws(() => findHeadEnd(bare, 0, bare.length, lf), UpstreamProtocolError);
});

Deno.test("findHeadEnd: start offset is respected", () => {
  const first = "HTTP/1.1 100 Continue\r\n\r\n";
  const second = "HTTP/1.1 200 OK\r\nx: y\r\n\r\n";
  const buf = bytes(first + second + "tail");
  assert.equal(findHeadEnd(buf, 0, buf.length), first.length);
  assert.equal(findHeadEnd(buf, first.length, buf.length), first.length + second.length);
  // A blank line before start is not seen.
  assert.equal(findHeadEnd(buf, first.length, first.length + second.length - 1), -1);
  // Only bytes in [start, end) count.
  assert.equal(findHeadEnd(buf, first.length + 3, buf.length), first.length + second.length);
});

// --- skipEmptyLines ----------------------------------------------------------------------

Deno.test("skipEmptyLines: CRLF lines before a status line are skipped, a lone CR waits", () => {
  const text = "\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
  const buf = bytes(text);
  assert.equal(skipEmptyLines(buf, 0, buf.length), 4);
  assert.equal(skipEmptyLines(buf, 2, buf.length), 4);
  assert.equal(skipEmptyLines(buf, 4, buf.length), 4, "nothing to skip");
  assert.equal(skipEmptyLines(buf, 0, 0), 0);
  assert.equal(skipEmptyLines(buf, 0, 1), 0, "a CR whose LF has not arrived");
  assert.equal(skipEmptyLines(buf, 0, 2), 2);
  assert.equal(skipEmptyLines(buf, 0, 3), 2);
});

Deno.test("skipEmptyLines: a bare LF or a bare CR before a status line is refused", () => {
  for (
    const text of ["\nHTTP/1.1 200 OK", "\r\n\nHTTP/1.1 200 OK", "\rHTTP/1.1 200 OK", "\r\r\n"]
  ) {
    const buf = bytes(text);
    assert.throws(
      () => skipEmptyLines(buf, 0, buf.length),
      UpstreamProtocolError,
      JSON.stringify(text),
    );
  }
});

// --- parseResponseHead -------------------------------------------------------------------

Deno.test("parseResponseHead: version, status, reason", () => {
  const parsed = head("HTTP/1.1 404 Not Found");
  assert.equal(parsed.minorVersion, 1);
  assert.equal(parsed.status, 404);
  assert.equal(parsed.statusText, "Not Found");
  assert.deepEqual(parsed.fields, []);
  const old = head("HTTP/1.0 200 OK");
  assert.equal(old.minorVersion, 0);
  assert.equal(old.status, 200);
  // A reason phrase with spaces and symbols is kept whole.
  assert.equal(
    head("HTTP/1.1 503 Service  Unavailable (try later)").statusText,
    "Service  Unavailable (try later)",
  );
});

Deno.test("parseResponseHead: empty or missing reason phrase", () => {
  assert.equal(head("HTTP/1.1 200").statusText, "");
  assert.equal(head("HTTP/1.1 200 ").statusText, "");
  assert.equal(head("HTTP/1.1 200").status, 200);
});

Deno.test("parseResponseHead: names lower-cased, values trimmed, order and repeats kept", () => {
  const parsed = head(
    "HTTP/1.1 200 OK",
    "Content-Type:  application/json ",
    "X-Empty:",
    "Set-Cookie: a=1",
    "set-cookie:\tb=2\t",
    "X-Colon: a:b: c",
  );
  assert.deepEqual(parsed.fields, [
    "content-type",
    "application/json",
    "x-empty",
    "",
    "set-cookie",
    "a=1",
    "set-cookie",
    "b=2",
    "x-colon",
    "a:b: c",
  ]);
});

Deno.test("parseResponseHead: a bare LF or CR ends no line and is refused", () => {
  for (
    const text of [
      "HTTP/1.1 201 Created\nLocation: /x\n\n",
      "HTTP/1.1 201 Created\r\nx-a: 1\ncontent-length: 0\r\n\r\n",
      "HTTP/1.1 201 Created\r\nx-a: 1\rcontent-length: 0\r\n\r\n",
      "HTTP/1.1 201 Created\r\nx-a: 1\r\r\n\r\n",
      "HTTP/1.1 201 Cre\rated\r\n\r\n",
      "HTTP/1.1 201 Created\r\r\n\r\n",
      "HTTP/1.1 201 Created\r\nx\r-a: 1\r\n\r\n",
      "HTTP/1.1 201 Created\r\n\r\r\n\r\n",
    ]
  ) {
    assert.throws(() => parseResponseHead(text), UpstreamProtocolError, JSON.stringify(text));
  }
});

Deno.test("parseResponseHead: Latin-1 bytes in values are kept", () => {
  const parsed = parseResponseHead(
    latin1(
      new Uint8Array([...bytes("HTTP/1.1 200 OK\r\nx: a"), 0xe9, 0xff, ...bytes("b\r\n\r\n")]),
    ),
  );
  assert.deepEqual(parsed.fields, ["x", "a\u00e9\u00ffb"]);
});

Deno.test({
  name: "parseResponseHead: a trailing 0xA0 byte is value content, not whitespace",
  fn() {
    // `x: voilà` in UTF-8, decoded one byte per character as the transport does.
    const raw = new Uint8Array([
      ...bytes("HTTP/1.1 200 OK\r\nx: voil"),
      0xc3,
      0xa0,
      ...bytes("\r\n\r\n"),
    ]);
    const parsed = parseResponseHead(latin1(raw));
    assert.deepEqual(parsed.fields, ["x", "voil\u00c3\u00a0"]);
  },
});

Deno.test("parseResponseHead: obsolete line folding is rejected", () => {
  assert.throws(() => head("HTTP/1.1 200 OK", "X-A: one", " two"), UpstreamProtocolError);
  assert.throws(() => head("HTTP/1.1 200 OK", "X-A: one", "\ttwo: three"), UpstreamProtocolError);
});

Deno.test("parseResponseHead: malformed status lines are rejected", () => {
  for (
    const line of [
      "",
      "HTTP/1.1",
      "HTTP/1.1 20 OK",
      "HTTP/1.1 2000 OK",
      "HTTP/1.1 099 Low",
      "HTTP/1.1 abc OK",
      "HTTP/2 200 OK",
      "HTTP/1.2 200 OK",
      "http/1.1 200 OK",
      "HTTP/1.1  200 OK",
      "HTTP/1.1\t200 OK",
      " HTTP/1.1 200 OK",
      "ICY 200 OK",
      "SSH-2.0-OpenSSH_9.6",
    ]
  ) {
    assert.throws(() => head(line), UpstreamProtocolError, JSON.stringify(line));
  }
});

Deno.test("parseResponseHead: header lines without a colon or with a bad name are rejected", () => {
  for (
    const line of [
      "no colon here",
      ": empty name",
      "Bad Name: x",
      "Name : x",
      "\tName: x",
      "Na\u00e9me: x",
      "Na(me): x",
      "Na/me: x",
    ]
  ) {
    assert.throws(
      () => head("HTTP/1.1 200 OK", "Ok: 1", line),
      UpstreamProtocolError,
      JSON.stringify(line),
    );
  }
});

Deno.test("parseResponseHead: the error message quotes at most 64 characters", () => {
  const long = "x".repeat(500);
  assert.throws(() => head(`HTTP/1.1 ${long}`), (error: Error) => {
    assert.ok(error instanceof UpstreamProtocolError);
    assert.ok(error.message.length < 120, error.message);
    return true;
  });
});

// --- responseFraming ---------------------------------------------------------------------

Deno.test("responseFraming: HEAD, 204, 304 and 1xx have no body", () => {
  const withLength = (status: string) => head(status, "Content-Length: 10");
  assert.deepEqual(responseFraming("HEAD", withLength("HTTP/1.1 200 OK")), { kind: "none" });
  assert.deepEqual(responseFraming("HEAD", head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")), {
    kind: "none",
  });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 204 No Content")), { kind: "none" });
  // A 304 may carry the representation's length (RFC 9110 §8.6).
  assert.deepEqual(responseFraming("GET", withLength("HTTP/1.1 304 Not Modified")), {
    kind: "none",
  });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 100 Continue")), { kind: "none" });
  assert.deepEqual(responseFraming("POST", head("HTTP/1.1 103 Early Hints", "Link: </a>")), {
    kind: "none",
  });
});

Deno.test("responseFraming: chunked", () => {
  for (const te of ["chunked", "Chunked", "gzip, chunked", "gzip,chunked ", "CHUNKED"]) {
    assert.deepEqual(
      responseFraming("GET", head("HTTP/1.1 200 OK", `Transfer-Encoding: ${te}`)),
      { kind: "chunked" },
      te,
    );
  }
  // Repeated Transfer-Encoding lines are one list.
  assert.deepEqual(
    responseFraming(
      "GET",
      head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
    ),
    { kind: "chunked" },
  );
});

Deno.test("responseFraming: a transfer coding not ending in chunked runs to close", () => {
  for (const te of ["gzip", "chunked, gzip", "identity"]) {
    assert.deepEqual(
      responseFraming("GET", head("HTTP/1.1 200 OK", `Transfer-Encoding: ${te}`)),
      { kind: "close" },
      te,
    );
  }
});

Deno.test("responseFraming: Transfer-Encoding together with Content-Length is refused", () => {
  for (
    const fields of [
      ["Content-Length: 5", "Transfer-Encoding: chunked"],
      ["Transfer-Encoding: chunked", "Content-Length: 5"],
      ["Transfer-Encoding: gzip", "Content-Length: 5"],
    ]
  ) {
    assert.throws(
      () => responseFraming("GET", head("HTTP/1.1 200 OK", ...fields)),
      UpstreamProtocolError,
      fields.join(", "),
    );
  }
  // Without a body to frame, neither matters.
  assert.deepEqual(
    responseFraming(
      "HEAD",
      head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Length: 5"),
    ),
    { kind: "none" },
  );
});

Deno.test("responseFraming: content-length", () => {
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK", "Content-Length: 42")), {
    kind: "length",
    length: 42,
  });
  assert.deepEqual(responseFraming("POST", head("HTTP/1.1 201 Created", "content-length: 0")), {
    kind: "length",
    length: 0,
  });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.0 200 OK", "Content-Length: 007")), {
    kind: "length",
    length: 7,
  });
});

Deno.test("responseFraming: repeated equal content-lengths are accepted", () => {
  assert.deepEqual(
    responseFraming("GET", head("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 5")),
    { kind: "length", length: 5 },
  );
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK", "Content-Length: 5, 5,5")), {
    kind: "length",
    length: 5,
  });
});

Deno.test("responseFraming: differing or non-numeric content-lengths throw", () => {
  const cases: string[][] = [
    ["Content-Length: 5", "Content-Length: 6"],
    ["Content-Length: 5, 6"],
    ["Content-Length: abc"],
    ["Content-Length: -1"],
    ["Content-Length: +5"],
    ["Content-Length: 5.0"],
    ["Content-Length: 0x10"],
    ["Content-Length: 1e3"],
    ["Content-Length:"],
    ["Content-Length: 5,"],
    ["Content-Length: 99999999999999999999"],
  ];
  for (const lines of cases) {
    assert.throws(
      () => responseFraming("GET", head("HTTP/1.1 200 OK", ...lines)),
      UpstreamProtocolError,
      lines.join(" | "),
    );
  }
});

Deno.test("responseFraming: no Content-Length and no Transfer-Encoding runs to close", () => {
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK")), { kind: "close" });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.0 200 OK", "Content-Type: text/plain")), {
    kind: "close",
  });
});

Deno.test("responseFraming: a 205's content (and a 204's declared one) is discarded, not read", () => {
  // RFC 9110 §15.3.6: a 205 has no content; an upstream that sends some anyway is not read.
  for (
    const field of [
      "Content-Length: 1073741824",
      "Transfer-Encoding: chunked",
      "Transfer-Encoding: gzip",
      "Content-Length: 5",
    ]
  ) {
    assert.deepEqual(responseFraming("GET", head("HTTP/1.1 205 Reset Content", field)), {
      kind: "discard",
    }, field);
    // §8.6: a 204 never has Content-Length; one that declares a body may well send it.
    assert.deepEqual(responseFraming("GET", head("HTTP/1.1 204 No Content", field)), {
      kind: "discard",
    }, field);
  }
  // Without framing headers the empty content runs to the close (§15.3.6 allows that).
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 205 Reset Content")), {
    kind: "discard",
  });
  // The framed empty 205 is the well-behaved one; so is a 204 saying Content-Length: 0.
  assert.deepEqual(
    responseFraming("GET", head("HTTP/1.1 205 Reset Content", "Content-Length: 0")),
    { kind: "none" },
  );
  assert.deepEqual(
    responseFraming("GET", head("HTTP/1.1 204 No Content", "Content-Length: 0")),
    { kind: "none" },
  );
  // Malformed framing is still refused.
  assert.throws(
    () => responseFraming("GET", head("HTTP/1.1 205 Reset Content", "Content-Length: x")),
    UpstreamProtocolError,
  );
});

// --- reusable ----------------------------------------------------------------------------

Deno.test("reusable: HTTP/1.1 with a length or chunked body", () => {
  const a = head("HTTP/1.1 200 OK", "Content-Length: 3");
  assert.equal(reusable(a, responseFraming("GET", a)), true);
  const b = head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Connection: keep-alive");
  assert.equal(reusable(b, responseFraming("GET", b)), true);
  const c = head("HTTP/1.1 204 No Content");
  assert.equal(reusable(c, responseFraming("GET", c)), true);
  // "closed" is not the close option.
  const d = head("HTTP/1.1 200 OK", "Content-Length: 0", "Connection: closed");
  assert.equal(reusable(d, responseFraming("GET", d)), true);
});

Deno.test("reusable: HTTP/1.0 is never reused", () => {
  const parsed = head("HTTP/1.0 200 OK", "Content-Length: 3", "Connection: keep-alive");
  assert.equal(reusable(parsed, responseFraming("GET", parsed)), false);
});

Deno.test("reusable: connection: close in any case, alone or in a list", () => {
  for (
    const value of [
      "close",
      "Close",
      "CLOSE",
      "keep-alive, close",
      "close, upgrade",
      "foo,close ,bar",
      " close ",
    ]
  ) {
    const parsed = head("HTTP/1.1 200 OK", "Content-Length: 3", `Connection: ${value}`);
    assert.equal(reusable(parsed, responseFraming("GET", parsed)), false, value);
  }
  // A second Connection line counts too.
  const two = head(
    "HTTP/1.1 200 OK",
    "Content-Length: 3",
    "Connection: keep-alive",
    "connection: close",
  );
  assert.equal(reusable(two, responseFraming("GET", two)), false);
});

Deno.test("reusable: a close-delimited body is never reused", () => {
  const parsed = head("HTTP/1.1 200 OK");
  assert.equal(reusable(parsed, { kind: "close" }), false);
});

Deno.test("reusable: a connection whose body is discarded is never reused", () => {
  const parsed = head("HTTP/1.1 205 Reset Content", "Content-Length: 5");
  assert.equal(reusable(parsed, responseFraming("GET", parsed)), false);
  const empty = head("HTTP/1.1 205 Reset Content", "Content-Length: 0");
  assert.equal(reusable(empty, responseFraming("GET", empty)), true);
});

Deno.test("parseResponseHead: control characters in a value or the reason phrase are refused", () => {
  for (const bad of ["x: a\u0000b", "x: a\u0001", "x: a\rb", "x: \u007f"]) {
    assert.throws(
      () => parseResponseHead(`HTTP/1.1 200 OK\r\n${bad}\r\n`),
      UpstreamProtocolError,
      JSON.stringify(bad),
    );
  }
  assert.throws(() => parseResponseHead("HTTP/1.1 200 O\u0007K\r\n"), UpstreamProtocolError);
  // Tab and Latin-1 bytes are fine.
  assert.deepEqual(parseResponseHead("HTTP/1.1 200 OK\r\nx: a\tb\u00e9\r\n").fields, [
    "x",
    "a\tb\u00e9",
  ]);
});

Deno.test("parseResponseHead: a status above 599 is refused", () => {
  assert.throws(() => parseResponseHead("HTTP/1.1 600 Odd\r\n"), UpstreamProtocolError);
  assert.throws(() => parseResponseHead("HTTP/1.1 999 Odd\r\n"), UpstreamProtocolError);
  assert.equal(parseResponseHead("HTTP/1.1 599 Odd\r\n").status, 599);
});

Deno.test("requestHead: a configured Host replaces the URL's authority, never a second Host", () => {
  const head = requestHead("GET", "/", {
    host: "10.0.0.1:8000",
    headers: { "host": "api.internal", "x": "1" },
    bodyLength: null,
    keepAlive: true,
  });
  assert.equal(head, "GET / HTTP/1.1\r\nhost: api.internal\r\nx: 1\r\n\r\n");
  assert.equal(head.match(/host:/g)!.length, 1);
});
