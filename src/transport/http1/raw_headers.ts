/**
 * Response headers of the HTTP/1.1 client.
 *
 * @module
 */
import type { ReplyHeaders } from "../transport.ts";

/**
 * Response headers straight from the parsed head, without building a `Headers` (which would
 * validate and re-sort every one): read once by the proxy, then copied into the client's
 * response.
 */
export class RawHeaders implements ReplyHeaders {
  readonly #values = new Map<string, string[]>();

  /** `raw`: name, value, name, value, … (names in any case). */
  constructor(raw: readonly string[]) {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const list = this.#values.get(name);
      if (list) list.push(raw[i + 1]!);
      else this.#values.set(name, [raw[i + 1]!]);
    }
  }

  get(name: string): string | null {
    return this.#values.get(name)?.join(", ") ?? null;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  forEach(callback: (value: string, name: string) => void): void {
    for (const [name, list] of this.#values) {
      // Set-Cookie values must stay separate; others combine as HTTP allows.
      if (name === "set-cookie") { for (const value of list) callback(value, name); }
      else callback(list.length === 1 ? list[0]! : list.join(", "), name);
    }
  }
}
