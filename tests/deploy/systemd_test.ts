/**
 * deploy/systemd/llmproxy.service: SIGHUP on reload, SIGTERM with time to drain, hardening, and
 * nothing that breaks Deno (V8 needs writable and executable memory).
 */
import assert from "node:assert/strict";

const FILE = new URL("../../deploy/systemd/llmproxy.service", import.meta.url);

/** A unit file's sections: key → values (a key may repeat). Comments and blank lines skipped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const section = line.match(/^\[(\w+)\]$/);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(current && eq > 0, `line ${i + 1}: ${line}`);
    const key = line.slice(0, eq);
    assert.match(key, /^[A-Za-z]+$/, `line ${i + 1}`);
    current.set(key, [...current.get(key) ?? [], line.slice(eq + 1)]);
  }
  return sections;
}

const unit = parseUnit(Deno.readTextFileSync(FILE));
const service = unit.get("Service")!;
const value = (key: string) => service.get(key)?.at(-1);

Deno.test("systemd: [Unit], [Service] and [Install] sections", () => {
  assert.deepEqual([...unit.keys()], ["Unit", "Service", "Install"]);
  assert.equal(unit.get("Install")!.get("WantedBy")?.[0], "multi-user.target");
});

Deno.test("systemd: ExecStart runs the binary on a config file; ExecReload sends SIGHUP", () => {
  assert.match(value("ExecStart")!, /^\/\S+\/llmproxy --config \/etc\/llmproxy\/config\.yaml/);
  assert.equal(value("ExecReload"), "/bin/kill -HUP $MAINPID");
});

Deno.test("systemd: SIGTERM stops it, with more time than the default drain (30 s)", () => {
  assert.equal(value("KillSignal"), "SIGTERM");
  assert.ok(Number(value("TimeoutStopSec")) > 30);
});

Deno.test("systemd: hardened (DynamicUser, ProtectSystem=strict, no capabilities, no new privileges)", () => {
  assert.equal(value("DynamicUser"), "yes");
  assert.equal(value("ProtectSystem"), "strict");
  assert.equal(value("ProtectHome"), "yes");
  assert.equal(value("NoNewPrivileges"), "yes");
  assert.equal(value("CapabilityBoundingSet"), "");
  assert.equal(value("PrivateTmp"), "yes");
  // V8 compiles code at run time: MemoryDenyWriteExecute=yes would stop the proxy at start.
  assert.notEqual(value("MemoryDenyWriteExecute"), "yes");
  // A writable cache for Deno under the dynamic user.
  assert.equal(value("CacheDirectory"), "llmproxy");
  assert.ok(service.get("Environment")!.some((e) => e.includes("DENO_DIR=%C/llmproxy")));
});
