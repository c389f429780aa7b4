import assert from "node:assert/strict";
import { BudgetLedger, periodStart } from "../../src/keys/budget.ts";

const DAY = 86_400_000;
const T = Date.UTC(2030, 0, 10, 12); // noon UTC

Deno.test("periodStart aligns periods to the Unix epoch (a day resets at midnight UTC)", () => {
  assert.equal(periodStart(DAY, T), Date.UTC(2030, 0, 10));
  assert.equal(periodStart(DAY, Date.UTC(2030, 0, 10)), Date.UTC(2030, 0, 10));
});

Deno.test("BudgetLedger counts usage per key within the period and resets with the next", () => {
  const ledger = new BudgetLedger();
  ledger.charge("a", DAY, T, 100);
  ledger.charge("a", DAY, T + 1_000, 50);
  ledger.charge("b", DAY, T, 7);
  assert.equal(ledger.used("a", DAY, T + 2_000), 150);
  assert.equal(ledger.used("b", DAY, T), 7);
  assert.equal(ledger.used("c", DAY, T), 0);
  assert.equal(ledger.used("a", DAY, T + DAY), 0, "the next day starts at zero");
  ledger.charge("a", DAY, T + DAY, 5);
  assert.equal(ledger.used("a", DAY, T + DAY), 5);
});

Deno.test("BudgetLedger.takeChanges: a snapshot only after a change; restore takes it back", () => {
  const ledger = new BudgetLedger();
  assert.equal(ledger.takeChanges(), undefined);
  ledger.charge("a", DAY, T, 10);
  ledger.charge("a", DAY, T, 0); // nothing used: no change
  const changes = ledger.takeChanges();
  assert.deepEqual(changes, [{ name: "a", periodStart: periodStart(DAY, T), used: 10 }]);
  assert.equal(ledger.takeChanges(), undefined);
  const restored = new BudgetLedger();
  restored.restore(changes!);
  assert.equal(restored.used("a", DAY, T), 10);
  assert.equal(restored.takeChanges(), undefined, "restoring is not a change to write back");
});
