/**
 * Response headers of the HTTP/1.1 client.
 *
 * @module
 */
import type { ReplyHeaders } from "../transport.ts";

/** Above this many fields, repeated names are found with a set instead of pairwise. */
const PAIRWISE_MAX = 32;

/**
 * Response headers straight from the parsed head, without building a `Headers` (which would
 * validate and re-sort every one) or a map: read a few times by the proxy, then copied into
 * the client's response. A head has a handful of fields, so a scan of the flat list is the
 * cheapest lookup.
 */
export class RawHeaders implements ReplyHeaders {
  /** name, value, name, value, …; names lower-case. */
  readonly #fields: string[];
  /** Some name appears more than once (`forEach` then combines them). */
  readonly #repeated: boolean;

  /** `raw`: name, value, name, value, … (names in any case). */
  constructor(raw: readonly string[]) {
    const fields = raw.length % 2 === 0 ? raw.slice() : raw.slice(0, -1);
    for (let i = 0; i < fields.length; i += 2) fields[i] = fields[i]!.toLowerCase();
    this.#fields = fields;
    this.#repeated = hasRepeatedName(fields);
  }

  get(name: string): string | null {
    const fields = this.#fields;
    let value: string | null = null;
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] !== name) continue;
      value = value === null ? fields[i + 1]! : `${value}, ${fields[i + 1]}`;
    }
    return value;
  }

  has(name: string): boolean {
    const fields = this.#fields;
    for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return true;
    return false;
  }

  forEach(callback: (value: string, name: string) => void): void {
    const fields = this.#fields;
    if (!this.#repeated) {
      for (let i = 0; i < fields.length; i += 2) callback(fields[i + 1]!, fields[i]!);
      return;
    }
    // A repeated name is given once, at its first place, with its values combined as HTTP
    // allows; Set-Cookie values stay separate.
    const grouped = new Map<string, string[]>();
    for (let i = 0; i < fields.length; i += 2) {
      const list = grouped.get(fields[i]!);
      if (list) list.push(fields[i + 1]!);
      else grouped.set(fields[i]!, [fields[i + 1]!]);
    }
    for (const [name, list] of grouped) {
      if (name === "set-cookie") { for (const value of list) callback(value, name); }
      else callback(list.length === 1 ? list[0]! : list.join(", "), name);
    }
  }
}

function hasRepeatedName(fields: readonly string[]): boolean {
  if (fields.length > PAIRWISE_MAX * 2) {
    const seen = new Set<string>();
    for (let i = 0; i < fields.length; i += 2) {
      if (seen.has(fields[i]!)) return true;
      seen.add(fields[i]!);
    }
    return false;
  }
  for (let i = 2; i < fields.length; i += 2) {
    for (let j = 0; j < i; j += 2) if (fields[i] === fields[j]) return true;
  }
  return false;
}
