import assert from "node:assert/strict";
import { ClientKeys, presentedKey } from "../../src/keys/client_keys.ts";
import { ClientKey } from "../../src/keys/client_key.ts";
import { BudgetLedger } from "../../src/keys/budget.ts";
import { formatDigest, keyDigest } from "../../src/keys/digest.ts";
import { ProxyError } from "../../src/pipeline/errors.ts";
import type { ClientKeyConfig } from "../../src/config/schema.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

function keyConfig(extra: Partial<ClientKeyConfig> = {}): ClientKeyConfig {
  return { name: "team_a", key: "sk-team-a-0123456789", ...extra };
}

/** The ProxyError `fn` throws, as {status, code, retryAfter}. */
function refusal(fn: () => void): { status: number; code: string; retryAfter?: string } {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProxyError, String(error));
    const retryAfter = error.headers["retry-after"];
    return { status: error.status, code: error.code, ...(retryAfter ? { retryAfter } : {}) };
  }
  assert.fail("expected a refusal");
}

Deno.test("keyDigest and formatDigest: SHA-256 of the key's UTF-8 bytes", () => {
  assert.equal(
    keyDigest("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(formatDigest("abc"), `sha256:${keyDigest("abc")}`);
});

Deno.test("ClientKeys.lookup finds keys written plainly or as a digest, by digest only", () => {
  const ledger = new BudgetLedger();
  const keys = new ClientKeys([
    keyConfig(),
    { name: "team_b", key: formatDigest("sk-team-b").toUpperCase().replace("SHA256:", "sha256:") },
    { name: "unset", key: "" },
  ], ledger);
  assert.equal(keys.size, 3);
  assert.equal(keys.lookup("sk-team-a-0123456789")?.name, "team_a");
  assert.equal(keys.lookup("sk-team-b")?.name, "team_b", "an upper-case digest works too");
  assert.equal(keys.lookup(""), undefined, "an empty configured key matches nothing");
  assert.equal(keys.lookup("sk-team-a-012345678"), undefined);
  assert.equal(keys.lookup("sk-team-a-01234567890"), undefined);
});

Deno.test("ClientKeys.lookup goes through the digest map: the time cannot depend on a matching prefix", () => {
  // Structural: the presented key is hashed once and the digest is the Map key, so a key that
  // shares a long prefix with a real one costs the same hash and one Map probe as any other.
  const hashed: string[] = [];
  const keys = new ClientKeys([keyConfig()], new BudgetLedger());
  const originalGet = Map.prototype.get;
  const probes: unknown[] = [];
  Map.prototype.get = function (this: Map<unknown, unknown>, k: unknown) {
    probes.push(k);
    return originalGet.call(this, k);
  };
  try {
    for (
      const candidate of ["sk-team-a-012345678X", "zzzzzzzzzzzzzzzzzzzz", "sk-team-a-0123456789"]
    ) {
      probes.length = 0;
      keys.lookup(candidate);
      hashed.push(keyDigest(candidate));
      assert.deepEqual(probes, [keyDigest(candidate)], "one probe, by the digest");
    }
  } finally {
    Map.prototype.get = originalGet;
  }
  assert.equal(new Set(hashed).size, 3);
});

Deno.test("ClientKeys: a reload keeps the state of a key whose config did not change", () => {
  const ledger = new BudgetLedger();
  const first = new ClientKeys([keyConfig(), { name: "b", key: "k-b" }], ledger);
  const same = new ClientKeys([keyConfig(), { name: "b", key: "k-b2" }], ledger, first);
  assert.equal(same.lookup("sk-team-a-0123456789"), first.lookup("sk-team-a-0123456789"));
  assert.notEqual(same.lookup("k-b2"), undefined);
  assert.equal(same.lookup("k-b"), undefined, "the old key of b is gone");
});

Deno.test("presentedKey: Bearer (any case), then x-api-key, then api-key; empty = none", () => {
  assert.equal(presentedKey(new Headers({ authorization: "Bearer k1" })), "k1");
  assert.equal(presentedKey(new Headers({ authorization: "bearer  k1 " })), "k1");
  assert.equal(presentedKey(new Headers({ "x-api-key": "k2" })), "k2");
  assert.equal(presentedKey(new Headers({ "api-key": "k3" })), "k3");
  assert.equal(presentedKey(new Headers({ authorization: "Basic eDp5", "x-api-key": "k2" })), "k2");
  assert.equal(presentedKey(new Headers({ authorization: "Bearer " })), "");
  assert.equal(presentedKey(new Headers()), "");
});

Deno.test("ClientKey.admit: groups and models (globs); a request naming no model passes", () => {
  const key = new ClientKey(
    keyConfig({ groups: ["chat"], models: ["gpt-4o*"] }),
    new BudgetLedger(),
  );
  key.admit("chat", "gpt-4o-mini", 0, 0);
  key.admit("chat", undefined, 0, 0);
  assert.deepEqual(refusal(() => key.admit("embeddings", "gpt-4o", 0, 0)), {
    status: 403,
    code: "group_not_allowed",
  });
  assert.deepEqual(refusal(() => key.admit("chat", "llama-3", 0, 0)), {
    status: 403,
    code: "model_not_allowed",
  });
});

Deno.test("ClientKey.admit: 5 requests per second pass, the 6th gets 429 with Retry-After", () => {
  const clock = new FakeClock();
  const key = new ClientKey(
    keyConfig({ ratelimit: { perSecond: 5, burst: 5 } }),
    new BudgetLedger(),
  );
  for (let i = 0; i < 5; i++) key.admit("g", undefined, clock.now(), clock.wallNow());
  assert.deepEqual(refusal(() => key.admit("g", undefined, clock.now(), clock.wallNow())), {
    status: 429,
    code: "rate_limited",
    retryAfter: "1",
  });
  clock.advance(200);
  key.admit("g", undefined, clock.now(), clock.wallNow());
});

Deno.test("ClientKey: tokens per minute refuse once the charged usage used them up", () => {
  const clock = new FakeClock();
  const key = new ClientKey(keyConfig({ tokens: { perMinute: 1_000 } }), new BudgetLedger());
  key.admit("g", undefined, clock.now(), clock.wallNow());
  key.charge({ prompt: 10, completion: 995 }, clock.now(), clock.wallNow());
  assert.deepEqual(refusal(() => key.admit("g", undefined, clock.now(), clock.wallNow())), {
    status: 429,
    code: "rate_limited",
    retryAfter: "1",
  });
  assert.equal(key.snapshot(clock.now(), clock.wallNow()).tokensThisMinute, 1_005);
  clock.advance(301);
  key.admit("g", undefined, clock.now(), clock.wallNow());
  clock.advance(60_000);
  assert.equal(key.snapshot(clock.now(), clock.wallNow()).tokensThisMinute, 0);
});

Deno.test("ClientKey: a spent budget is 429 budget_exceeded until the period resets", () => {
  const DAY = 86_400_000;
  const clock = new FakeClock(0, Date.UTC(2030, 0, 10, 18)); // 6 hours before midnight UTC
  const ledger = new BudgetLedger();
  const key = new ClientKey(keyConfig({ budget: { tokens: 100, period: DAY } }), ledger);
  key.admit("g", undefined, clock.now(), clock.wallNow());
  key.charge({ prompt: 60, completion: 40 }, clock.now(), clock.wallNow());
  assert.deepEqual(refusal(() => key.admit("g", undefined, clock.now(), clock.wallNow())), {
    status: 429,
    code: "budget_exceeded",
    retryAfter: String(6 * 3600),
  });
  assert.deepEqual(key.snapshot(clock.now(), clock.wallNow()).budget, {
    used: 100,
    remaining: 0,
    resetsAt: "2030-01-11T00:00:00.000Z",
  });
  clock.advance(6 * 3600 * 1000);
  key.admit("g", undefined, clock.now(), clock.wallNow());
});

Deno.test("ClientKey.admit: a refused request takes nothing from the request limit", () => {
  const key = new ClientKey(
    keyConfig({ ratelimit: { perSecond: 1, burst: 1 }, models: ["a"] }),
    new BudgetLedger(),
  );
  refusal(() => key.admit("g", "b", 0, 0));
  key.admit("g", "a", 0, 0);
});
