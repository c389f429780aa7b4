import assert from "node:assert/strict";
import { defaultMaxConnections, openFilesLimit } from "../../src/server/open_files.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

Deno.test("openFilesLimit() reads the soft limit from /proc/self/limits", () => {
  assert.equal(openFilesLimit(() => LIMITS), 1024);
  assert.equal(
    openFilesLimit(() => LIMITS.replace("1024 ", "unlimited ")),
    Number.MAX_SAFE_INTEGER,
  );
  assert.equal(openFilesLimit(() => "garbage"), undefined);
  assert.equal(
    openFilesLimit(() => {
      throw new Deno.errors.NotFound("no /proc");
    }),
    undefined,
  );
});

Deno.test("openFilesLimit() of this process never throws (without --allow-all Deno refuses /proc/self)", () => {
  const limit = openFilesLimit();
  assert.ok(limit === undefined || limit > 0);
});

Deno.test("defaultMaxConnections() keeps two descriptors per connection and a reserve", () => {
  assert.equal(defaultMaxConnections(1024), 480);
  assert.equal(defaultMaxConnections(256), 96);
  assert.equal(defaultMaxConnections(10), 1);
  assert.equal(defaultMaxConnections(undefined), 1_000);
});
