import assert from "node:assert/strict";
import { BudgetFile } from "../../src/state/budget_file.ts";
import { BudgetLedger } from "../../src/keys/budget.ts";
import { BudgetSync, WRITE_INTERVAL_MS } from "../../src/keys/budget_sync.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { silentLogger } from "../../src/log.ts";

const DAY = 86_400_000;

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-state-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("BudgetFile: entries written are read back by a new handle (another process start)", async () => {
  await withDir((dir) => {
    const path = `${dir}/state.db`;
    const file = new BudgetFile(path);
    assert.deepEqual(file.load(), []);
    file.save([{ name: "a", periodStart: 0, used: 10 }, { name: "b", periodStart: DAY, used: 3 }]);
    file.save([{ name: "a", periodStart: DAY, used: 12 }]);
    file.close();
    const again = new BudgetFile(path);
    assert.deepEqual(again.load().sort((x, y) => x.name.localeCompare(y.name)), [
      { name: "a", periodStart: DAY, used: 12 },
      { name: "b", periodStart: DAY, used: 3 },
    ]);
    again.close();
  });
});

/** A BudgetFile that counts its writes. */
class CountingFile extends BudgetFile {
  writes = 0;
  override save(entries: Parameters<BudgetFile["save"]>[0]): void {
    this.writes++;
    super.save(entries);
  }
}

Deno.test("BudgetSync: restores at start, writes at most once per second while usage changes, and on close", async () => {
  await withDir((dir) => {
    const path = `${dir}/state.db`;
    const seed = new BudgetFile(path);
    const clock = new FakeClock(0, Date.UTC(2030, 0, 10, 12));
    seed.save([{ name: "a", periodStart: Date.UTC(2030, 0, 10), used: 40 }]);
    seed.close();

    const ledger = new BudgetLedger();
    const file = new CountingFile(path);
    const sync = new BudgetSync(ledger, file, { clock, log: silentLogger });
    assert.equal(ledger.used("a", DAY, clock.wallNow()), 40, "restored");
    for (let i = 0; i < 45; i++) {
      ledger.charge("a", DAY, clock.wallNow(), 1);
      clock.advance(20);
    }
    assert.equal(file.writes, 0, "not before a second passed");
    clock.advance(WRITE_INTERVAL_MS - 45 * 20);
    assert.equal(file.writes, 1, "one write for 45 charges");
    clock.advance(5 * WRITE_INTERVAL_MS);
    assert.equal(file.writes, 1, "nothing changed: nothing written");
    ledger.charge("a", DAY, clock.wallNow(), 5);
    sync.close();
    assert.equal(file.writes, 2, "the last usage is written on close");
    const reread = new BudgetFile(path);
    assert.deepEqual(reread.load(), [{
      name: "a",
      periodStart: Date.UTC(2030, 0, 10),
      used: 90,
    }]);
    reread.close();
  });
});
