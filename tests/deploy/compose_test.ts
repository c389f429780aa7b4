/**
 * deploy/compose/compose.yaml: the image, the config directory it mounts (whose config passes the
 * project's validation), the published ports and the drain time agree.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { parseConfig } from "../../src/config/load.ts";

const DIR = new URL("../../deploy/compose/", import.meta.url);

// deno-lint-ignore no-explicit-any
const compose: any = parse(Deno.readTextFileSync(new URL("compose.yaml", DIR)));
const service = compose.services.llmproxy;
const configText = Deno.readTextFileSync(new URL("config/config.yaml", DIR));
const { config } = parseConfig(
  configText,
  "config.yaml",
  (name) => name in service.environment ? `value-of-${name}` : undefined,
);

/** Container port → what is published for it ("127.0.0.1:9000", "3000"). */
function published(): Map<number, string> {
  const map = new Map<number, string>();
  for (const entry of service.ports as string[]) {
    const parts = entry.split(":");
    map.set(Number(parts.at(-1)), parts.slice(0, -1).join(":"));
  }
  return map;
}

/** Compose durations as used here: "35s", "1m30s". */
function seconds(duration: string): number {
  const match = duration.match(/^(?:(\d+)m)?(?:(\d+)s)?$/);
  assert.ok(match, duration);
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0);
}

Deno.test("compose: the image built by deno task image, its config directory mounted read-only at /config", () => {
  assert.equal(service.image, "llmproxy:latest");
  assert.ok(service.volumes.includes("./config:/config:ro"), service.volumes.join());
  assert.equal(service.read_only, true);
  assert.ok(service.tmpfs.includes("/tmp"));
});

Deno.test("compose: every ${VAR} of the config is in the service's environment", () => {
  for (const [, name] of configText.matchAll(/\$\{([A-Z_][A-Z0-9_]*)\}/g)) {
    assert.ok(name! in service.environment, name);
  }
});

Deno.test("compose: the forward port is published, the admin port on the host's loopback only", () => {
  const ports = published();
  const forward = config.httpServer.forwards[0]!;
  assert.equal(forward.address, "0.0.0.0");
  assert.ok(ports.has(forward.port), `forward ${forward.port}`);
  const admin = config.httpServer.admin!;
  assert.match(ports.get(admin.port) ?? "", /^127\.0\.0\.1:\d+$/);
});

Deno.test("compose: stop_grace_period outlasts the drain", () => {
  assert.ok(seconds(service.stop_grace_period) * 1000 > config.httpServer.shutdownTimeout);
});
