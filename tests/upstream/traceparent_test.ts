import assert from "node:assert/strict";
import { nextTraceparent, RequestHeaderPlan } from "../../src/upstream/headers.ts";

const SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";

function parts(value: string): { traceId: string; parentId: string; flags: string } {
  const match = SHAPE.exec(value);
  assert.ok(match, `well-formed traceparent: ${value}`);
  return { traceId: match[1]!, parentId: match[2]!, flags: match[3]! };
}

Deno.test("traceparent: the client's trace id continues with a new parent id", () => {
  const incoming = `00-${TRACE}-${PARENT}-01`;
  const out = parts(nextTraceparent(incoming));
  assert.equal(out.traceId, TRACE);
  assert.notEqual(out.parentId, PARENT);
  assert.notEqual(out.parentId, "0".repeat(16));
  assert.equal(out.flags, "01");
});

Deno.test("traceparent: the sampled flag is kept as sent", () => {
  assert.equal(parts(nextTraceparent(`00-${TRACE}-${PARENT}-00`)).flags, "00");
  assert.equal(parts(nextTraceparent(`00-${TRACE}-${PARENT}-03`)).flags, "03");
});

Deno.test("traceparent: surrounding whitespace is tolerated", () => {
  assert.equal(parts(nextTraceparent(`  00-${TRACE}-${PARENT}-01 `)).traceId, TRACE);
});

Deno.test("traceparent: each call makes a new parent id", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    seen.add(parts(nextTraceparent(`00-${TRACE}-${PARENT}-01`)).parentId);
  }
  assert.equal(seen.size, 100);
});

Deno.test("traceparent: absent → a new trace, sampled", () => {
  for (const incoming of [null, ""]) {
    const out = parts(nextTraceparent(incoming));
    assert.notEqual(out.traceId, "0".repeat(32));
    assert.equal(out.flags, "01");
  }
  const a = parts(nextTraceparent(null)).traceId;
  const b = parts(nextTraceparent(null)).traceId;
  assert.notEqual(a, b, "fresh trace ids differ");
});

Deno.test("traceparent: malformed → a new trace, never the malformed one", () => {
  const malformed = [
    "garbage",
    `00-${TRACE}-${PARENT}`, // no flags
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper case hex
    `00-${TRACE.slice(1)}-${PARENT}-01`, // short trace id
    `00-${TRACE}-${PARENT.slice(1)}-01`, // short parent id
    `00-${TRACE}z-${PARENT}-01`,
    `00-${"0".repeat(32)}-${PARENT}-01`, // all-zero trace id is invalid
    `00_${TRACE}_${PARENT}_01`,
    `00-${TRACE}-${PARENT}-01-extra`,
    `${TRACE}`,
  ];
  for (const incoming of malformed) {
    const out = parts(nextTraceparent(incoming));
    assert.notEqual(out.traceId, TRACE, incoming);
    assert.notEqual(out.traceId, "0".repeat(32), incoming);
    assert.notEqual(out.traceId, TRACE.toLowerCase().slice(1), incoming);
  }
});

Deno.test("traceparent: the header plan sets it on the outgoing request", () => {
  const plan = new RequestHeaderPlan({ auth: { type: "none" }, userAgent: "t", ops: [] });
  const facts = { peerIp: "127.0.0.1", proto: "http" };
  const continued = plan.build(new Headers({ traceparent: `00-${TRACE}-${PARENT}-01` }), facts);
  assert.equal(parts(continued["traceparent"]!).traceId, TRACE);
  assert.notEqual(parts(continued["traceparent"]!).parentId, PARENT);
  const started = plan.build(new Headers(), facts);
  assert.ok(SHAPE.test(started["traceparent"]!));
});

Deno.test("nextTraceparent(): an all-zero parent or version ff starts a new trace; later versions continue", () => {
  assert.notEqual(parts(nextTraceparent(`00-${TRACE}-${"0".repeat(16)}-01`)).traceId, TRACE);
  assert.notEqual(parts(nextTraceparent(`ff-${TRACE}-${PARENT}-01`)).traceId, TRACE);
  assert.equal(parts(nextTraceparent(`01-${TRACE}-${PARENT}-01-future`)).traceId, TRACE);
  assert.notEqual(parts(nextTraceparent(`00-${TRACE}-${PARENT}-01-extra`)).traceId, TRACE);
});

Deno.test("nextTraceparent(): new trace and span ids come from the given id source", () => {
  const ids = { requestId: () => "r", traceId: () => "a".repeat(32), spanId: () => "b".repeat(16) };
  assert.equal(nextTraceparent(null, ids), `00-${"a".repeat(32)}-${"b".repeat(16)}-01`);
  assert.equal(
    nextTraceparent(`00-${TRACE}-${PARENT}-01`, ids),
    `00-${TRACE}-${"b".repeat(16)}-01`,
  );
  const plan = new RequestHeaderPlan({ auth: { type: "none" }, userAgent: "t", ops: [], ids });
  const out = plan.build(new Headers(), { peerIp: "127.0.0.1", proto: "http" });
  assert.equal(out["traceparent"], `00-${"a".repeat(32)}-${"b".repeat(16)}-01`);
});
