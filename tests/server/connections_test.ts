import assert from "node:assert/strict";
import {
  type CloseReason,
  ConnectionGuard,
  type ConnectionLimits,
} from "../../src/server/connections.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

const LIMITS: ConnectionLimits = {
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxConnections: 2,
};

function guardAt(limits: ConnectionLimits = LIMITS) {
  const clock = new FakeClock(0);
  const closed: [string, CloseReason][] = [];
  const open: [string, number][] = [];
  const guard = new ConnectionGuard(() => limits, {
    clock,
    sweepTimer: false,
    onClose: (listener, reason) => closed.push([listener, reason]),
    onOpenChange: (listener, n) => open.push([listener, n]),
  });
  return {
    guard,
    closed,
    open,
    advance(ms: number) {
      clock.advance(ms);
      guard.sweep();
    },
    get now() {
      return clock.now();
    },
  };
}

Deno.test("ConnectionGuard.admit() refuses past maxConnections, across listeners, until one is released", () => {
  const t = guardAt();
  const a = t.guard.admit("public", () => {});
  const b = t.guard.admit("internal", () => {});
  assert.ok(a && b);
  assert.equal(t.guard.admit("public", () => {}), undefined);
  assert.deepEqual(t.closed, [["public", "limit"]]);
  a.release();
  a.release(); // twice is harmless: the count must not go below what is open
  assert.equal(t.guard.open, 1);
  assert.ok(t.guard.admit("public", () => {}));
  assert.equal(t.guard.open, 2);
  assert.equal(t.guard.openOf("public"), 1);
  assert.deepEqual(t.open, [["public", 1], ["internal", 1], ["public", 0], ["public", 1]]);
});

Deno.test("ConnectionGuard.sweep() closes a connection that sent no complete head within headerTimeout", () => {
  const t = guardAt();
  let closes = 0;
  t.guard.admit("public", () => closes++);
  t.advance(9_999);
  assert.equal(closes, 0);
  t.advance(1);
  assert.equal(closes, 1);
  assert.deepEqual(t.closed, [["public", "header_timeout"]]);
  t.advance(100_000); // closing is once; the server's end releases it
  assert.equal(closes, 1);
});

Deno.test("ConnectionGuard.sweep() never closes a connection with a request in progress (a long stream)", () => {
  const t = guardAt();
  let closes = 0;
  const c = t.guard.admit("public", () => closes++)!;
  c.requestStarted();
  t.advance(3_600_000);
  assert.equal(closes, 0);
  c.requestEnded(t.now);
  t.advance(59_999);
  assert.equal(closes, 0);
  t.advance(1);
  assert.equal(closes, 1);
  assert.deepEqual(t.closed, [["public", "idle_timeout"]]);
});

Deno.test("ConnectionGuard: the idle time restarts with each request; HTTP/2-style overlapping requests count", () => {
  const t = guardAt();
  let closes = 0;
  const c = t.guard.admit("public", () => closes++)!;
  c.requestStarted();
  c.requestStarted();
  c.requestEnded(t.now);
  t.advance(120_000); // one still in progress
  assert.equal(closes, 0);
  c.requestEnded(t.now);
  t.advance(30_000);
  c.requestStarted();
  c.requestEnded(t.now);
  t.advance(59_000);
  assert.equal(closes, 0);
  t.advance(1_000);
  assert.equal(closes, 1);
});

Deno.test("ConnectionGuard: a draining connection is never closed by the guard", () => {
  const t = guardAt();
  let closes = 0;
  const c = t.guard.admit("public", () => closes++)!;
  c.drain();
  t.advance(100_000);
  c.close();
  assert.equal(closes, 0);
  assert.deepEqual(t.closed, []);
});

Deno.test("ConnectionGuard reads its limits on use: a reload applies to what follows", () => {
  let limits: ConnectionLimits = { ...LIMITS, maxConnections: 1 };
  const guard = new ConnectionGuard(() => limits, { clock: new FakeClock(0), sweepTimer: false });
  assert.ok(guard.admit("public", () => {}));
  assert.equal(guard.admit("public", () => {}), undefined);
  limits = { ...LIMITS, maxConnections: 5 };
  assert.ok(guard.admit("public", () => {}));
});

Deno.test("ConnectionGuard.exhausted() lowers the bound to 90 % of what is open, never raises it", () => {
  const guard = new ConnectionGuard(() => ({ ...LIMITS, maxConnections: 1_000 }), {
    clock: new FakeClock(0),
    sweepTimer: false,
  });
  for (let i = 0; i < 20; i++) guard.admit("public", () => {});
  assert.equal(guard.exhausted(), 18);
  assert.equal(guard.maxConnections, 18);
  assert.equal(guard.admit("public", () => {}), undefined);
  assert.equal(guard.exhausted(), undefined, "20 open: 90 % is not below 18");
});

Deno.test("ConnectionGuard sweeps on an unref'd timer of its clock, only while connections are open", () => {
  const clock = new FakeClock(0);
  const closed: CloseReason[] = [];
  const guard = new ConnectionGuard(
    () => ({ headerTimeoutMs: 100, idleTimeoutMs: 1_000, maxConnections: 10 }),
    { clock, onClose: (_, reason) => closed.push(reason) },
  );
  assert.equal(clock.pending, 0, "no timer while nothing is open");
  let closes = 0;
  const c = guard.admit("public", () => closes++)!;
  // A quarter of the shortest timeout: 25 ms; it never keeps the process alive.
  assert.deepEqual(clock.dueIn, [25]);
  assert.equal(clock.unrefPending, 1);
  clock.advance(99);
  assert.equal(closes, 0);
  clock.advance(1); // the sweep at 100 ms finds no head after 100 ms
  assert.equal(closes, 1);
  assert.deepEqual(closed, ["header_timeout"]);
  c.release();
  assert.equal(clock.pending, 0, "the sweep stops with the last connection");
});
