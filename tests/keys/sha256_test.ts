import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256, sha256Hex } from "../../src/keys/sha256.ts";

Deno.test("sha256: the FIPS 180-4 examples", () => {
  assert.equal(
    sha256Hex(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assert.equal(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("sha256: equals node:crypto for every length around the block boundaries, and UTF-8", () => {
  for (let length = 0; length <= 200; length++) {
    const input = Array.from({ length }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95)))
      .join("");
    assert.equal(sha256Hex(input), createHash("sha256").update(input).digest("hex"), `${length}`);
  }
  for (const input of ["sk-é€😀", "ключ", "\u0000\u00ff", "x".repeat(100_000)]) {
    assert.equal(sha256Hex(input), createHash("sha256").update(input).digest("hex"));
  }
});

Deno.test("sha256: bytes in, bytes out; a long input between two short ones leaves nothing behind", () => {
  const expected = (input: string | Uint8Array) => createHash("sha256").update(input).digest();
  const bytes = new Uint8Array(300).map((_, i) => (i * 31) & 0xff);
  for (const input of ["short", bytes, "x".repeat(127), "short", bytes.subarray(0, 55), "ab"]) {
    assert.deepEqual(sha256(input), new Uint8Array(expected(input)));
    assert.equal(sha256Hex(input), expected(input).toString("hex"));
  }
});
