/**
 * Keeps a {@linkcode BudgetLedger} in its store file: read once at start-up, written at most
 * once per second while usage changes (one small transaction, off the request path) and once
 * more on shutdown. A failed write is logged and retried with the next one: budgets keep being
 * enforced from memory meanwhile.
 *
 * @module
 */
import type { Clock, Timer } from "../deps.ts";
import type { Logger } from "../log.ts";
import type { BudgetFile } from "../state/budget_file.ts";
import type { BudgetBook } from "./budget.ts";

/** How often changed usage is written, at most (ms). */
export const WRITE_INTERVAL_MS = 1_000;

/** The periodic writer of a ledger into its file. */
export class BudgetSync {
  readonly #ledger: BudgetBook;
  readonly #file: BudgetFile;
  readonly #clock: Clock;
  readonly #log: Logger;
  #timer: Timer | undefined;

  /** Restores `ledger` from `file` and starts writing changes every second. */
  constructor(ledger: BudgetBook, file: BudgetFile, options: { clock: Clock; log: Logger }) {
    this.#ledger = ledger;
    this.#file = file;
    this.#clock = options.clock;
    this.#log = options.log;
    ledger.restore(file.load());
    this.#schedule();
  }

  /** Writes what changed since the last write. */
  flush(): void {
    const changes = this.#ledger.takeChanges();
    if (!changes) return;
    try {
      this.#file.save(changes);
    } catch (error) {
      this.#ledger.markChanged();
      this.#log.warn("cannot write client key budgets to state.path; retrying", { error });
    }
  }

  /** Writes a last time and closes the file. */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.flush();
    this.#file.close();
  }

  #schedule(): void {
    // unref: housekeeping must not keep a stopping process alive (close() writes the last).
    this.#timer = this.#clock.after(WRITE_INTERVAL_MS, () => {
      this.flush();
      this.#schedule();
    }, { unref: true });
  }
}
