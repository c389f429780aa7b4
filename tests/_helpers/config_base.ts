/**
 * A minimal valid config to append sections to, and the loaders the config section tests share.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError, type LoadedConfig, parseConfig } from "../../src/config/load.ts";

/** One forward → group `g1` → upstream `u1`; sections (clientKeys, state, …) go after it. */
export const BASE_CONFIG = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: g1
upstreams:
  - name: u1
    url: "https://api.example.com/v1"
upstreamGroups:
  - name: g1
    upstreams:
      - name: u1
`;

/** {@linkcode BASE_CONFIG} plus `extra`, loaded as `c.yaml` with `env`. */
export function loadWith(extra: string, env: Record<string, string> = {}): LoadedConfig {
  return parseConfig(BASE_CONFIG + extra, "c.yaml", (name) => env[name]);
}

/** The error lines of {@linkcode loadWith}; fails when it loads. */
export function errorsWith(extra: string, env: Record<string, string> = {}): string[] {
  try {
    loadWith(extra, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  assert.fail("expected a ConfigError");
}
