import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256Hex } from "../../src/keys/sha256.ts";

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
