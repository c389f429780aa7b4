/**
 * Per-upstream circuit breaker: a pure state machine that is told the time.
 *
 * closed → open when, within the rolling `intervalMs`, at least `minRequests` finished and
 * the failure rate ≥ `threshold`; open rejects for `cooldownMs`; then half-open lets
 * `maxRequests` probes through: all succeed → closed (window reset), any fails → open again
 * with a fresh cooldown.
 *
 * Late results (a request started in an earlier state finishing now) are handled in two
 * layers:
 * - Precise: read {@link CircuitBreaker.generation} right after a successful `acquire()` and
 *   pass it back to `onSuccess`/`onFailure`/`onCancel`. A result whose generation differs
 *   from the current one (any state change happened since) is ignored.
 * - Heuristic, when no generation is passed: results are ignored while open (a slow success
 *   from before the trip must not close the breaker, and a slow failure must not extend the
 *   cooldown), and in half-open a result only counts as a probe while probes are in flight.
 *   Without the generation a stale result that lands while real probes are in flight is
 *   indistinguishable from a probe result and counts as one.
 *
 * @module
 */

/** States of a {@link CircuitBreaker}. */
export type BreakerState = "closed" | "open" | "half_open";

/** Options for {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /**
   * Failure rate (0..1) at or above which the breaker trips. A window without failures
   * never trips, even at threshold 0.
   */
  threshold: number;
  /** How long (ms) the breaker stays open before letting probes through. */
  cooldownMs: number;
  /** Number of half-open probes; all of them must succeed to close again. */
  maxRequests: number;
  /** Length (ms) of the rolling window the failure rate is computed over. */
  intervalMs: number;
  /** Finished requests needed within the window before the rate is judged at all. */
  minRequests: number;
}

/** Observation hooks, e.g. for metrics. Hooks must not throw. */
export interface CircuitBreakerHooks {
  /** Called once per transition, after the new state is in place; `now` is in ms. */
  onStateChange?(from: BreakerState, to: BreakerState, now: number): void;
}

/** A point-in-time view of a breaker for an admin endpoint. */
export interface BreakerSnapshot {
  state: BreakerState;
  /** Failures in the rolling window (reset when the breaker closes). */
  failures: number;
  /** Successes in the rolling window (reset when the breaker closes). */
  successes: number;
  /** ms until an open breaker goes half-open; 0 in other states. */
  remainingCooldownMs: number;
}

/**
 * The rolling window is a fixed ring of this many time buckets, so memory stays constant
 * whatever the traffic. An event ages out between 0.9 and 1.0 × `intervalMs` after it was
 * recorded (bucket granularity).
 */
const BUCKETS = 10;

/**
 * Circuit breaker driven by an injected clock (`now` in ms, monotonic, e.g.
 * `performance.now()`).
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from "./circuit_breaker.ts";
 *
 * const breaker = new CircuitBreaker({
 *   threshold: 0.5,
 *   cooldownMs: 30_000,
 *   maxRequests: 1,
 *   intervalMs: 60_000,
 *   minRequests: 5,
 * });
 * if (breaker.acquire(performance.now())) {
 *   const generation = breaker.generation;
 *   // ... send the request, then exactly one of onSuccess / onFailure / onCancel:
 *   breaker.onSuccess(performance.now(), generation);
 * }
 * ```
 */
export class CircuitBreaker {
  readonly #options: Readonly<CircuitBreakerOptions>;
  readonly #hooks: CircuitBreakerHooks;
  /** Width (ms) of one window bucket. */
  readonly #bucketMs: number;
  /** Bucket index (floor(now / bucketMs)) each ring slot currently holds. */
  readonly #epochs = new Float64Array(BUCKETS).fill(-Infinity);
  readonly #successes = new Float64Array(BUCKETS);
  readonly #failures = new Float64Array(BUCKETS);

  #state: BreakerState = "closed";
  /** When (ms) the breaker last opened. */
  #openedAt = 0;
  /** Bumped on every transition; lets callers tag requests with the state they started in. */
  #generation = 0;
  /** Half-open probes acquired and not yet finished. */
  #probesInFlight = 0;
  /** Half-open probes that succeeded in this half-open period. */
  #probeSuccesses = 0;

  constructor(options: CircuitBreakerOptions, hooks: CircuitBreakerHooks = {}) {
    validate(options);
    this.#options = { ...options };
    this.#hooks = hooks;
    this.#bucketMs = options.intervalMs / BUCKETS;
  }

  /**
   * Changes on every state transition. Read it right after a successful `acquire()` and
   * pass it to `onSuccess`/`onFailure`/`onCancel` so late results are ignored precisely.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Current state; an open breaker whose cooldown elapsed turns half-open here (lazily). */
  state(now: number): BreakerState {
    this.#advance(now);
    return this.#state;
  }

  /**
   * Whether a request could pass now. Side-effect free: never transitions or fires hooks,
   * so balancers may call it freely while filtering candidates.
   */
  canPass(now: number): boolean {
    switch (this.#state) {
      case "closed":
        return true;
      case "open":
        // Would turn half-open with every probe slot free.
        return this.#cooldownElapsed(now);
      case "half_open":
        return this.#probesInFlight + this.#probeSuccesses < this.#options.maxRequests;
    }
  }

  /**
   * Takes permission for one request. In half-open this consumes a probe slot, which the
   * caller must give back through exactly one of `onSuccess`, `onFailure` or `onCancel`.
   */
  acquire(now: number): boolean {
    this.#advance(now);
    if (this.#state === "closed") return true;
    if (this.#state === "open") return false;
    if (this.#probesInFlight + this.#probeSuccesses >= this.#options.maxRequests) return false;
    this.#probesInFlight++;
    return true;
  }

  /** Records a success; `generation` (from {@link generation}) filters out late results. */
  onSuccess(now: number, generation?: number): void {
    if (!this.#accepts(now, generation)) return;
    if (this.#state === "closed") {
      this.#record(now, false);
      this.#maybeTrip(now);
    } else if (this.#state === "half_open") {
      this.#probesInFlight--;
      this.#probeSuccesses++;
      this.#record(now, false);
      if (this.#probeSuccesses >= this.#options.maxRequests) this.#transition("closed", now);
    }
  }

  /** Records a failure; `generation` (from {@link generation}) filters out late results. */
  onFailure(now: number, generation?: number): void {
    if (!this.#accepts(now, generation)) return;
    if (this.#state === "closed") {
      this.#record(now, true);
      this.#maybeTrip(now);
    } else if (this.#state === "half_open") {
      this.#record(now, true);
      this.#transition("open", now);
    }
  }

  /**
   * A request ended neither way (e.g. the client disconnected): counts nothing, but gives
   * a half-open probe slot back so another probe may go.
   */
  onCancel(now: number, generation?: number): void {
    if (!this.#accepts(now, generation)) return;
    if (this.#state === "half_open") this.#probesInFlight--;
  }

  /** ms until an open breaker lets probes through; 0 when not open. Side-effect free. */
  remainingCooldownMs(now: number): number {
    if (this.#state !== "open") return 0;
    return Math.max(0, this.#openedAt + this.#options.cooldownMs - now);
  }

  /** State and window counts for an admin endpoint (may perform the lazy half-open turn). */
  snapshot(now: number): BreakerSnapshot {
    const state = this.state(now);
    const { failures, successes } = this.#counts(now);
    return { state, failures, successes, remainingCooldownMs: this.remainingCooldownMs(now) };
  }

  /** Whether a result counts: same generation; never while open; in half-open only as a probe. */
  #accepts(now: number, generation: number | undefined): boolean {
    this.#advance(now);
    if (generation !== undefined && generation !== this.#generation) return false;
    if (this.#state === "open") return false;
    if (this.#state === "half_open" && this.#probesInFlight === 0) return false;
    return true;
  }

  #cooldownElapsed(now: number): boolean {
    return now - this.#openedAt >= this.#options.cooldownMs;
  }

  #advance(now: number): void {
    if (this.#state === "open" && this.#cooldownElapsed(now)) this.#transition("half_open", now);
  }

  #maybeTrip(now: number): void {
    const { failures, successes } = this.#counts(now);
    const total = failures + successes;
    if (
      total >= this.#options.minRequests && failures > 0 &&
      failures / total >= this.#options.threshold
    ) {
      this.#transition("open", now);
    }
  }

  #transition(to: BreakerState, now: number): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#probesInFlight = 0;
    this.#probeSuccesses = 0;
    if (to === "open") this.#openedAt = now;
    // A closed breaker starts judging afresh; the failures that tripped it are history.
    if (to === "closed") this.#resetWindow();
    this.#hooks.onStateChange?.(from, to, now);
  }

  #bucketIndex(now: number): number {
    return Math.floor(now / this.#bucketMs);
  }

  #record(now: number, failed: boolean): void {
    const index = this.#bucketIndex(now);
    const slot = ((index % BUCKETS) + BUCKETS) % BUCKETS;
    if (this.#epochs[slot] !== index) {
      this.#epochs[slot] = index;
      this.#successes[slot] = 0;
      this.#failures[slot] = 0;
    }
    if (failed) this.#failures[slot]!++;
    else this.#successes[slot]!++;
  }

  #counts(now: number): { failures: number; successes: number } {
    const index = this.#bucketIndex(now);
    let failures = 0;
    let successes = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const epoch = this.#epochs[slot]!;
      if (epoch > index - BUCKETS && epoch <= index) {
        failures += this.#failures[slot]!;
        successes += this.#successes[slot]!;
      }
    }
    return { failures, successes };
  }

  #resetWindow(): void {
    this.#epochs.fill(-Infinity);
    this.#successes.fill(0);
    this.#failures.fill(0);
  }
}

function validate(options: CircuitBreakerOptions): void {
  const { threshold, cooldownMs, maxRequests, intervalMs, minRequests } = options;
  if (!(threshold >= 0 && threshold <= 1)) {
    throw new RangeError(`Circuit breaker threshold must be within 0..1, got ${threshold}`);
  }
  if (!(cooldownMs >= 0 && Number.isFinite(cooldownMs))) {
    throw new RangeError(`Circuit breaker cooldownMs must be a finite ms ≥ 0, got ${cooldownMs}`);
  }
  if (!(Number.isInteger(maxRequests) && maxRequests >= 1)) {
    throw new RangeError(`Circuit breaker maxRequests must be an integer ≥ 1, got ${maxRequests}`);
  }
  if (!(intervalMs > 0 && Number.isFinite(intervalMs))) {
    throw new RangeError(`Circuit breaker intervalMs must be a finite ms > 0, got ${intervalMs}`);
  }
  if (!(Number.isInteger(minRequests) && minRequests >= 1)) {
    throw new RangeError(`Circuit breaker minRequests must be an integer ≥ 1, got ${minRequests}`);
  }
}
