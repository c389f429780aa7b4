/**
 * The configured client keys, found by the SHA-256 digest of what a request presents: one
 * hash and one Map lookup, whatever the key, so the time taken does not depend on how much of
 * a key matched. The key itself is never kept here, only its digest.
 *
 * @module
 */
import type { ClientKeyConfig } from "../config/schema.ts";
import { ClientKey } from "./client_key.ts";
import type { BudgetBook } from "./budget.ts";
import { configuredDigest, keyDigest } from "./digest.ts";
import type { LimitState } from "../state/limit_state.ts";

/** The request headers a client key may come in, all removed before the request goes on. */
export const KEY_HEADERS = ["authorization", "x-api-key", "api-key"] as const;

/** Every client key of a config, by digest. */
export class ClientKeys {
  readonly #byDigest = new Map<string, ClientKey>();
  readonly #byName = new Map<string, ClientKey>();

  /**
   * Builds the keys of `configs`. A key of `previous` (a reload) whose config did not change
   * keeps its limits' state; budgets live in `ledger`, shared by every graph; the rates' state
   * in `limits` (default: this thread's memory).
   */
  constructor(
    configs: readonly ClientKeyConfig[],
    ledger: BudgetBook,
    previous?: ClientKeys,
    limits?: LimitState,
  ) {
    for (const config of configs) {
      const kept = previous ? previous.#byName.get(config.name) : undefined;
      const key = kept && JSON.stringify(kept.config) === JSON.stringify(config)
        ? kept
        : new ClientKey(config, ledger, limits);
      this.#byName.set(config.name, key);
      const digest = configuredDigest(config.key);
      // An empty key (an unset `${LLMPROXY_KEY:-}`) is in no map: nobody can present it.
      if (digest !== undefined) this.#byDigest.set(digest, key);
    }
  }

  /** Number of keys configured. */
  get size(): number {
    return this.#byName.size;
  }

  /** Every key, in config order. */
  all(): IterableIterator<ClientKey> {
    return this.#byName.values();
  }

  /** The key `presented` stands for, or undefined. */
  lookup(presented: string): ClientKey | undefined {
    return this.#byDigest.get(keyDigest(presented));
  }
}

/**
 * The key a request presents: `Authorization: Bearer <key>` (the scheme case-insensitive),
 * else `x-api-key` (Anthropic SDKs), else `api-key` (Azure SDKs). Empty = none presented.
 */
export function presentedKey(headers: Headers): string {
  const authorization = headers.get("authorization");
  if (authorization !== null && /^bearer /i.test(authorization)) {
    const key = authorization.slice(7).trim();
    if (key) return key;
  }
  return (headers.get("x-api-key") ?? headers.get("api-key") ?? "").trim();
}
