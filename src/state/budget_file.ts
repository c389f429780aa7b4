/**
 * Budget usage in an embedded store file (`state.path`): SQLite through Deno's built-in
 * `node:sqlite`, so nothing needs installing or a server running, a write is one atomic
 * transaction (a crash leaves the last complete write, never half of one), and the file can be
 * read with the `sqlite3` shell. Synchronous calls of microseconds, at most once per second.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { BudgetEntry } from "../keys/budget.ts";

/** The budget table of one state file. */
export class BudgetFile {
  readonly #db: DatabaseSync;

  /** Opens (creating when absent) the store at `path`. Throws when it cannot. */
  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(`CREATE TABLE IF NOT EXISTS key_budgets (
      name TEXT PRIMARY KEY,
      period_start INTEGER NOT NULL,
      used INTEGER NOT NULL
    ) STRICT`);
  }

  /** Every stored entry. */
  load(): BudgetEntry[] {
    const rows = this.#db.prepare("SELECT name, period_start, used FROM key_budgets").all();
    return rows.map((row) => ({
      name: String(row.name),
      periodStart: Number(row.period_start),
      used: Number(row.used),
    }));
  }

  /** Writes `entries` (each replacing the stored one of its key) in one transaction. */
  save(entries: readonly BudgetEntry[]): void {
    const upsert = this.#db.prepare(
      "INSERT INTO key_budgets (name, period_start, used) VALUES (?, ?, ?) " +
        "ON CONFLICT(name) DO UPDATE SET period_start = excluded.period_start, used = excluded.used",
    );
    this.#db.exec("BEGIN");
    try {
      for (const e of entries) upsert.run(e.name, e.periodStart, Math.round(e.used));
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  close(): void {
    this.#db.close();
  }
}
