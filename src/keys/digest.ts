/**
 * Client keys are known by their SHA-256 digest: the config may hold only the digest
 * (`sha256:<hex>`), and a presented key is looked up by its digest, so lookup time does not
 * depend on how much of a key matched.
 *
 * @module
 */
import { sha256Hex } from "./sha256.ts";

/** The prefix of a key written as its digest. */
export const DIGEST_PREFIX = "sha256:";

/**
 * The lower-case hex SHA-256 digest of `key`'s UTF-8 bytes. Synchronous: one hash per request
 * costs about a microsecond, far less than an await on `crypto.subtle` (see `sha256.ts` for
 * why not `node:crypto`).
 */
export function keyDigest(key: string): string {
  return sha256Hex(key);
}

/**
 * The digest a configured `key` stands for: the hex of a `sha256:` value (lower-cased), else
 * the digest of the key itself. Undefined for an empty key (one nobody can present).
 */
export function configuredDigest(key: string): string | undefined {
  if (key === "") return undefined;
  if (key.startsWith(DIGEST_PREFIX)) return key.slice(DIGEST_PREFIX.length).toLowerCase();
  return keyDigest(key);
}

/** What `--hash-key` prints for `key`: `sha256:<hex>`. */
export function formatDigest(key: string): string {
  return DIGEST_PREFIX + keyDigest(key);
}

/**
 * The key in what `--hash-key` read on stdin: one line, its line end (`\n` or `\r\n`) not
 * part of it. An error message for no key or more than one line.
 */
export function keyFromInput(text: string): { key: string } | { error: string } {
  const key = text.endsWith("\r\n")
    ? text.slice(0, -2)
    : text.endsWith("\n")
    ? text.slice(0, -1)
    : text;
  if (key === "") return { error: "no key on stdin" };
  if (/[\r\n]/.test(key)) return { error: "stdin holds more than one line: give one key" };
  return { key };
}
