/**
 * One client key at run time: what it may use (groups, models) and how much (requests per
 * second, tokens per minute, a token budget per period), with the state of its limits.
 * Authorising throws the contract's errors; charging happens when an answer's usage is known.
 *
 * @module
 */
import type { ClientKeyConfig } from "../config/schema.ts";
import { ForbiddenError, RateLimitedError } from "../pipeline/errors.ts";
import { type BudgetBook, periodStart } from "./budget.ts";
import { globMatcher } from "../routing/glob.ts";
import {
  type KeyLimits,
  type KeyVerdict,
  type LimitState,
  memoryLimits,
  type RateBucket,
  type TokenAllowance,
} from "../state/limit_state.ts";
import { MinuteWindow } from "./minute_window.ts";
import type { TokenUsage } from "../stream/usage.ts";

/** What `/keys` shows of a key. */
export interface ClientKeySnapshot {
  name: string;
  requests: number;
  tokensThisMinute: number;
  budget: { used: number; remaining: number; resetsAt: string } | null;
}

/** A configured client key with its limits' state. */
export class ClientKey {
  readonly config: ClientKeyConfig;
  readonly #groups: ReadonlySet<string> | undefined;
  readonly #model: ((model: string) => boolean) | undefined;
  readonly #requests: RateBucket | undefined;
  readonly #tokens: TokenAllowance | undefined;
  readonly #ledger: BudgetBook;
  /**
   * The limits in a store shared by instances (Redis), checked there in one round trip; then
   * `#requests`, `#tokens` and `#ledger` are this process's fallback (and what `/keys` shows).
   */
  readonly #shared: KeyLimits | undefined;
  /** Requests identified as this key (admitted or not), for `/keys`. */
  #seen = 0;
  /** Tokens charged in the last minute, for `/keys` (with or without a tokens limit). */
  readonly #minute = new MinuteWindow();

  /** `limits`: where the request and token rates keep their state. @default memoryLimits */
  constructor(config: ClientKeyConfig, ledger: BudgetBook, limits: LimitState = memoryLimits) {
    this.config = config;
    this.#groups = config.groups ? new Set(config.groups) : undefined;
    this.#model = config.models ? globMatcher(config.models) : undefined;
    this.#requests = config.ratelimit
      ? limits.bucket(`key:${config.name}`, config.ratelimit)
      : undefined;
    this.#tokens = config.tokens
      ? limits.tokenRate(`key:${config.name}`, config.tokens.perMinute)
      : undefined;
    this.#ledger = ledger;
    this.#shared = limits.keyLimits?.({
      name: config.name,
      ratelimit: config.ratelimit,
      tokens: config.tokens,
      budget: config.budget,
    });
  }

  get name(): string {
    return this.config.name;
  }

  /** Whether the key restricts models (then the request body's `model` is needed). */
  get restrictsModels(): boolean {
    return this.#model !== undefined;
  }

  /**
   * Whether the key may use `group` and, when given, `model` (what a fallback is checked
   * against; takes nothing from any limit).
   */
  allows(group: string, model?: string): boolean {
    if (this.#groups && !this.#groups.has(group)) return false;
    return model === undefined || this.#model === undefined || this.#model(model);
  }

  /** Counts a request presented with this key. */
  seen(): void {
    this.#seen++;
  }

  /**
   * Admits a request to `group` for `model` at `now` (monotonic ms) and `wallNow`, or throws:
   * 403 for what the key may not use, 429 for a limit or the budget. A refused request takes
   * nothing from the request limit. `model` undefined: the request has no body, so it asks
   * for none; null: its body names none this proxy can read. A promise only when the limits
   * are in a shared store.
   */
  admit(
    group: string,
    model: string | null | undefined,
    now: number,
    wallNow: number,
  ): void | Promise<void> {
    if (this.#groups && !this.#groups.has(group)) {
      throw new ForbiddenError(`client key "${this.name}" may not use group "${group}"`, {
        code: "group_not_allowed",
      });
    }
    if (this.#model && model === null) {
      // Fail closed: a body without a model this proxy can read (none, not JSON, a JSON only a
      // laxer parser takes, such as Python's with NaN) may still name one upstream, or get the
      // upstream's default model; a key limited to some models does not pass with it.
      throw new ForbiddenError(
        `client key "${this.name}" may only use the models it is allowed: the request must name one ("model" in a JSON body)`,
        { code: "model_not_allowed" },
      );
    }
    if (this.#model && typeof model === "string" && !this.#model(model)) {
      // The model is the client's own text: quoted as JSON, never interpreted.
      throw new ForbiddenError(
        `client key "${this.name}" may not use model ${JSON.stringify(model.slice(0, 200))}`,
        { code: "model_not_allowed" },
      );
    }
    if (this.#shared) {
      return this.#shared.admit(wallNow).then((verdict) =>
        verdict ? this.#judge(verdict, wallNow) : this.#admitHere(now, wallNow)
      );
    }
    this.#admitHere(now, wallNow);
  }

  /** The limits checked in this process (alone, or the shared store's fallback). */
  #admitHere(now: number, wallNow: number): void {
    const budget = this.config.budget;
    if (budget && this.#ledger.used(this.name, budget.period, wallNow) >= budget.tokens) {
      throw this.#budgetSpent(wallNow);
    }
    const tokensWait = this.#tokens?.msUntilAdmitted(now) ?? 0;
    if (tokensWait > 0) throw this.#overTokens(tokensWait);
    if (this.#requests && !this.#requests.tryTake(now)) {
      throw this.#overRequests(this.#requests.msUntil(now));
    }
  }

  /** The shared store's verdict: its budget usage is remembered here (`/keys`, a fallback). */
  #judge(verdict: KeyVerdict, wallNow: number): void {
    this.#remember(verdict.budgetUsed, wallNow);
    switch (verdict.kind) {
      case "admitted":
        return;
      case "budget":
        throw this.#budgetSpent(wallNow);
      case "tokens":
        throw this.#overTokens(verdict.waitMs);
      case "requests":
        throw this.#overRequests(verdict.waitMs);
    }
  }

  #remember(budgetUsed: number, wallNow: number): void {
    const budget = this.config.budget;
    if (!budget) return;
    const start = periodStart(budget.period, wallNow);
    this.#ledger.restore([{ name: this.name, periodStart: start, used: budgetUsed }]);
  }

  #budgetSpent(wallNow: number): RateLimitedError {
    const budget = this.config.budget!;
    const resetsAt = periodStart(budget.period, wallNow) + budget.period;
    return limited(
      `client key "${this.name}" has used its budget of ${budget.tokens} tokens; it resets at ${
        new Date(resetsAt).toISOString()
      }`,
      "budget_exceeded",
      resetsAt - wallNow,
    );
  }

  #overTokens(waitMs: number): RateLimitedError {
    return limited(
      `client key "${this.name}" is over its ${this.config.tokens!.perMinute} tokens per minute`,
      "rate_limited",
      waitMs,
    );
  }

  #overRequests(waitMs: number): RateLimitedError {
    return limited(
      `client key "${this.name}" is over its rate limit of ${
        this.config.ratelimit!.perSecond
      } requests per second`,
      "rate_limited",
      waitMs,
    );
  }

  /** Charges the usage of an answer that ended at `now` / `wallNow`. */
  charge(usage: TokenUsage, now: number, wallNow: number): void {
    const total = usage.prompt + usage.completion;
    if (!(total > 0)) return;
    this.#tokens?.charge(now, total);
    this.#minute.add(now, total);
    const budget = this.config.budget;
    if (budget) this.#ledger.charge(this.name, budget.period, wallNow, total);
    // Fire and forget (never rejects): the store's total, all instances together, is kept.
    void this.#shared?.charge(total, wallNow).then((used) => {
      if (used !== undefined) this.#remember(used, wallNow);
    });
  }

  /** The key's state for `/keys`. */
  snapshot(now: number, wallNow: number): ClientKeySnapshot {
    const budget = this.config.budget;
    const used = budget ? this.#ledger.used(this.name, budget.period, wallNow) : 0;
    return {
      name: this.name,
      requests: this.#seen,
      tokensThisMinute: this.#minute.sum(now),
      budget: budget
        ? {
          used,
          remaining: Math.max(0, budget.tokens - used),
          resetsAt: new Date(periodStart(budget.period, wallNow) + budget.period).toISOString(),
        }
        : null,
    };
  }
}

function limited(message: string, code: string, waitMs: number): RateLimitedError {
  return new RateLimitedError(message, {
    code,
    headers: { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) },
  });
}
