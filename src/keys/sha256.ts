/**
 * SHA-256 (FIPS 180-4), synchronous, in TypeScript. A client key is hashed on every request:
 * `crypto.subtle.digest` is asynchronous (an await per request), and `node:crypto` would load
 * Deno's Node compatibility layer into the proxy process, which makes every timer a Node
 * `Timeout` and costs more per request than this function does for a key-sized input.
 *
 * @module
 */

/** The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/** The first 32 bits of the fractional parts of the square roots of the first 8 primes. */
const H0 = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

const encoder = new TextEncoder();
/** The message schedule, reused: the function never yields, so one is enough. */
const W = new Int32Array(64);
/** The padded message of a key-sized input, reused for the same reason. */
const scratch = new Uint8Array(128);

/**
 * The SHA-256 digest of `input` (a string is hashed as UTF-8), as 32 bytes. The arithmetic is
 * on signed 32-bit values (`| 0`), which V8 keeps in registers; unsigned ones (`>>> 0`) above
 * 2^31 become heap numbers, which made a key's hash about four times slower.
 */
export function sha256(input: string | Uint8Array): Uint8Array {
  const state = digestWords(input);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const word = state[i]!;
    out[i * 4] = word >>> 24;
    out[i * 4 + 1] = word >>> 16;
    out[i * 4 + 2] = word >>> 8;
    out[i * 4 + 3] = word;
  }
  return out;
}

/** The digest as 64 lower-case hex digits. */
export function sha256Hex(input: string | Uint8Array): string {
  const state = digestWords(input);
  let hex = "";
  for (let i = 0; i < 8; i++) {
    const word = state[i]!;
    hex += HEX[word >>> 24]! + HEX[(word >>> 16) & 0xff] + HEX[(word >>> 8) & 0xff] +
      HEX[word & 0xff];
  }
  return hex;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** The hash state, returned by {@linkcode digestWords} and read before its next call. */
const STATE = new Int32Array(8);

/** The eight words of `input`'s digest, in {@linkcode STATE}. */
function digestWords(input: string | Uint8Array): Int32Array {
  const length = typeof input === "string" ? asciiLength(input) : input.length;
  const data = length < 0 ? encoder.encode(input as string) : input;
  const size = data.length;
  // Padding: a 1 bit, zeros, then the length in bits as a 64-bit big-endian number.
  const paddedLength = Math.ceil((size + 9) / 64) * 64;
  const padded = paddedLength <= scratch.length ? scratch : new Uint8Array(paddedLength);
  if (typeof data === "string") {
    for (let i = 0; i < size; i++) padded[i] = data.charCodeAt(i);
  } else padded.set(data);
  padded.fill(0, size, paddedLength);
  padded[size] = 0x80;
  const bits = size * 8;
  writeWord(padded, paddedLength - 8, Math.floor(bits / 0x1_0000_0000));
  writeWord(padded, paddedLength - 4, bits);

  let h0 = H0[0]!, h1 = H0[1]!, h2 = H0[2]!, h3 = H0[3]!;
  let h4 = H0[4]!, h5 = H0[5]!, h6 = H0[6]!, h7 = H0[7]!;
  for (let offset = 0; offset < paddedLength; offset += 64) {
    for (let t = 0; t < 16; t++) {
      const at = offset + t * 4;
      W[t] = (padded[at]! << 24) | (padded[at + 1]! << 16) | (padded[at + 2]! << 8) |
        padded[at + 3]!;
    }
    for (let t = 16; t < 64; t++) {
      const w15 = W[t - 15]!;
      const w2 = W[t - 2]!;
      const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
      W[t] = (W[t - 16]! + s0 + W[t - 7]! + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let t = 0; t < 64; t++) {
      const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + s1 + ch + K[t]! + W[t]!) | 0;
      const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (s0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  STATE[0] = h0;
  STATE[1] = h1;
  STATE[2] = h2;
  STATE[3] = h3;
  STATE[4] = h4;
  STATE[5] = h5;
  STATE[6] = h6;
  STATE[7] = h7;
  return STATE;
}

/** `text`'s length when every character is ASCII (its UTF-8 is its char codes), else -1. */
function asciiLength(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return -1;
  return text.length;
}

/** `word`'s low 32 bits, big-endian, at `at`. */
function writeWord(bytes: Uint8Array, at: number, word: number): void {
  bytes[at] = word >>> 24;
  bytes[at + 1] = word >>> 16;
  bytes[at + 2] = word >>> 8;
  bytes[at + 3] = word;
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}
