/**
 * Which strings of a config are secrets: credentials (auth tokens, passwords, the admin token,
 * outbound proxy credentials) and every value of 8+ characters that came from `${VAR}`
 * interpolation. The
 * logger refuses to print them and the admin API redacts them.
 *
 * @module
 */
import type { LoadedConfig } from "./load.ts";

/** Every secret string of a loaded config (empty strings left out). */
export function configSecrets(loaded: LoadedConfig): Set<string> {
  const secrets = new Set<string>();
  const add = (value: string | undefined) => {
    if (value) secrets.add(value);
  };
  // Short interpolated values are ports and flags, not credentials; redacting them would
  // garble ordinary log lines ("listening on :[REDACTED]").
  for (const value of loaded.interpolatedValues) if (value.length >= 8) add(value);
  const { config } = loaded;
  add(config.httpServer.admin?.token);
  for (const u of config.upstreams) {
    if (u.auth.type === "bearer") add(u.auth.token);
    if (u.auth.type === "basic") {
      add(u.auth.password);
      add(btoa(`${u.auth.username}:${u.auth.password}`));
    }
  }
  for (const g of config.upstreamGroups) {
    const proxy = g.httpClient.proxy;
    if (!proxy) continue;
    try {
      const url = new URL(proxy.url);
      add(decodeURIComponent(url.password));
      add(url.password);
    } catch { /* validated at load */ }
  }
  return secrets;
}
