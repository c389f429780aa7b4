import assert from "node:assert/strict";
import { RawHeaders } from "../../../src/transport/http1/raw_headers.ts";

function entries(headers: RawHeaders): [string, string][] {
  const out: [string, string][] = [];
  headers.forEach((value, name) => out.push([name, value]));
  return out;
}

Deno.test("RawHeaders: names compared lower-case; get, has and forEach in arrival order", () => {
  const headers = new RawHeaders(["Content-Type", "application/json", "X-A", "1"]);
  assert.equal(headers.get("content-type"), "application/json");
  assert.equal(headers.get("x-missing"), null);
  assert.equal(headers.has("x-a"), true);
  assert.equal(headers.has("x-b"), false);
  assert.deepEqual(entries(headers), [["content-type", "application/json"], ["x-a", "1"]]);
});

Deno.test("RawHeaders: a repeated name is combined at its first place; Set-Cookie stays separate", () => {
  const headers = new RawHeaders([
    "Vary",
    "a",
    "Set-Cookie",
    "s=1",
    "x-b",
    "2",
    "vary",
    "b",
    "set-cookie",
    "t=2",
  ]);
  assert.equal(headers.get("vary"), "a, b");
  assert.deepEqual(entries(headers), [
    ["vary", "a, b"],
    ["set-cookie", "s=1"],
    ["set-cookie", "t=2"],
    ["x-b", "2"],
  ]);
});

Deno.test("RawHeaders: repeats are found in a long head too (the set-based check)", () => {
  const raw: string[] = [];
  for (let i = 0; i < 100; i++) raw.push(`x-${i}`, String(i));
  assert.equal(entries(new RawHeaders(raw)).length, 100);
  raw.push("X-7", "again");
  const headers = new RawHeaders(raw);
  assert.equal(headers.get("x-7"), "7, again");
  assert.equal(entries(headers).length, 100);
  assert.deepEqual(entries(headers)[7], ["x-7", "7, again"]);
});

Deno.test("RawHeaders: a trailing name without a value is ignored", () => {
  const headers = new RawHeaders(["a", "1", "b"]);
  assert.equal(headers.has("b"), false);
  assert.deepEqual(entries(headers), [["a", "1"]]);
});
