import assert from "node:assert/strict";
import { parseDurationMs, parseSizeBytes } from "../../src/config/units.ts";

Deno.test("parseDurationMs: strings with a unit ignore the bare unit", () => {
  for (const bare of ["s", "ms"] as const) {
    assert.equal(parseDurationMs("250ms", bare), 250);
    assert.equal(parseDurationMs("30s", bare), 30_000);
    assert.equal(parseDurationMs("5m", bare), 300_000);
    assert.equal(parseDurationMs("1h", bare), 3_600_000);
    assert.equal(parseDurationMs("0s", bare), 0);
    assert.equal(parseDurationMs("0ms", bare), 0);
  }
});

Deno.test("parseDurationMs: decimals with a unit", () => {
  assert.equal(parseDurationMs("1.5s", "s"), 1_500);
  assert.equal(parseDurationMs("0.5m", "s"), 30_000);
  assert.equal(parseDurationMs("2.5h", "ms"), 9_000_000);
  assert.equal(parseDurationMs("0.25s", "ms"), 250);
});

Deno.test("parseDurationMs: surrounding and inner whitespace is allowed", () => {
  assert.equal(parseDurationMs(" 30s ", "s"), 30_000);
  assert.equal(parseDurationMs("30 s", "s"), 30_000);
  assert.equal(parseDurationMs(" 7 ", "s"), 7_000);
});

Deno.test("parseDurationMs: a bare number is read in the field's unit", () => {
  assert.equal(parseDurationMs(30, "s"), 30_000);
  assert.equal(parseDurationMs(30, "ms"), 30);
  assert.equal(parseDurationMs(0, "s"), 0);
  assert.equal(parseDurationMs(0.5, "s"), 500);
  assert.equal(parseDurationMs(1.5, "ms"), 1.5);
  // A numeric string is a bare number too.
  assert.equal(parseDurationMs("30", "s"), 30_000);
  assert.equal(parseDurationMs("30", "ms"), 30);
  assert.equal(parseDurationMs("0.25", "s"), 250);
});

Deno.test("parseDurationMs: days, for budget periods", () => {
  assert.equal(parseDurationMs("30d", "s"), 30 * 86_400_000);
  assert.equal(parseDurationMs("1d", "ms"), 86_400_000);
});

Deno.test("parseDurationMs: garbage is undefined", () => {
  for (
    const value of [
      "",
      " ",
      "abc",
      "s",
      "ms",
      "30x",
      "1w",
      "30S",
      "30 seconds",
      "1e3",
      "1e3s",
      ".5s",
      "5.s",
      "1h30m",
      "0x10",
      "30s30",
    ]
  ) {
    assert.equal(parseDurationMs(value, "s"), undefined, JSON.stringify(value));
    assert.equal(parseDurationMs(value, "ms"), undefined, JSON.stringify(value));
  }
});

Deno.test("parseDurationMs: negative and non-finite values are undefined", () => {
  for (const value of [-1, -0.5, "-1", "-1s", "-250ms", NaN, Infinity, -Infinity]) {
    assert.equal(parseDurationMs(value, "s"), undefined, String(value));
  }
});

Deno.test("parseDurationMs: non-number, non-string values are undefined", () => {
  for (const value of [null, undefined, true, false, {}, [], [30], { s: 30 }]) {
    assert.equal(parseDurationMs(value, "s"), undefined, JSON.stringify(value));
  }
});

Deno.test("parseSizeBytes: binary units", () => {
  assert.equal(parseSizeBytes("512KiB"), 524_288);
  assert.equal(parseSizeBytes("32MiB"), 33_554_432);
  assert.equal(parseSizeBytes("1GiB"), 1_073_741_824);
  assert.equal(parseSizeBytes("1.5KiB"), 1_536);
});

Deno.test("parseSizeBytes: decimal units", () => {
  assert.equal(parseSizeBytes("1GB"), 1_000_000_000);
  assert.equal(parseSizeBytes("10MB"), 10_000_000);
  assert.equal(parseSizeBytes("2KB"), 2_000);
  assert.equal(parseSizeBytes("100B"), 100);
});

Deno.test("parseSizeBytes: units are case-insensitive and whitespace is allowed", () => {
  assert.equal(parseSizeBytes("1kb"), 1_000);
  assert.equal(parseSizeBytes("1kib"), 1_024);
  assert.equal(parseSizeBytes("1MIB"), 1_048_576);
  assert.equal(parseSizeBytes(" 2 MiB "), 2_097_152);
});

Deno.test("parseSizeBytes: bytes as a number or a numeric string", () => {
  assert.equal(parseSizeBytes(0), 0);
  assert.equal(parseSizeBytes(1), 1);
  assert.equal(parseSizeBytes(1_048_576), 1_048_576);
  assert.equal(parseSizeBytes("4096"), 4_096);
});

Deno.test("parseSizeBytes: fractional bytes from a string are floored", () => {
  assert.equal(parseSizeBytes("0.5B"), 0);
  assert.equal(parseSizeBytes("1.9"), 1);
  assert.equal(parseSizeBytes("0.001KiB"), 1);
});

Deno.test("parseSizeBytes: garbage is undefined", () => {
  for (
    const value of [
      "",
      " ",
      "abc",
      "MiB",
      "10XB",
      "10 TB",
      "1TiB",
      "-5",
      "-1KiB",
      "1e3",
      "32 MiB extra",
      1.5,
      -1,
      NaN,
      Infinity,
      null,
      undefined,
      true,
      {},
      [1024],
    ]
  ) {
    assert.equal(parseSizeBytes(value), undefined, String(value));
  }
});
