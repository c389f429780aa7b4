/**
 * Which strings of a config are secrets: credentials (auth tokens, passwords, the admin token,
 * outbound proxy credentials, TLS private keys) and every value of 8+ characters that came from
 * `${VAR}` interpolation. The
 * logger refuses to print them and the admin API redacts them.
 *
 * @module
 */
import type { LoadedConfig } from "./errors.ts";
import { base64Utf8 } from "../bytes.ts";

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
  // A loaded config holds a key's PEM text, whether it was written inline or as a file path.
  add(config.httpServer.admin?.tls?.key);
  for (const f of config.httpServer.forwards) add(f.tls?.key);
  for (const u of config.upstreams) {
    if (u.auth.type === "bearer") add(u.auth.token);
    if (u.auth.type === "basic") {
      add(u.auth.password);
      // As the Authorization header carries it.
      add(base64Utf8(`${u.auth.username}:${u.auth.password}`));
    }
    // A credential can also be sent as a header op (e.g. `x-api-key`, `api-key` for Azure).
    for (const op of u.headers) if (isSensitiveHeader(op.key)) add(op.value);
  }
  // A digest is what the file may show; the key itself is a credential.
  for (const k of config.clientKeys) if (!k.key.startsWith("sha256:")) add(k.key);
  for (const g of config.upstreamGroups) {
    add(g.httpClient.tls?.key);
    const proxy = g.httpClient.proxy;
    if (!proxy) continue;
    try {
      const url = new URL(proxy.url);
      add(decodeURIComponent(url.password));
      add(url.password);
    } catch { /* validated at load */ }
  }
  if (config.state.store === "redis") {
    try {
      const url = new URL(config.state.redis.url);
      add(decodeURIComponent(url.password));
      add(url.password);
    } catch { /* validated at load */ }
  }
  return secrets;
}

/** What secrets are replaced with wherever config is shown. */
export const REDACTED = "[REDACTED]";

/**
 * `text` with every secret of `loaded` replaced by `[REDACTED]`: for messages answered to an
 * admin client (the log redacts on its own), e.g. why a reload of `loaded` was rejected.
 */
export function concealSecrets(text: string, loaded: LoadedConfig): string {
  // Longest first, so a secret that contains another is replaced whole; shorter than 4 would
  // garble words, as in the logger.
  const secrets = [...configSecrets(loaded)].filter((s) => s.length >= 4)
    .sort((a, b) => b.length - a.length);
  for (const secret of secrets) text = text.replaceAll(secret, REDACTED);
  return text;
}

/**
 * The effective config for display: every credential field and every string containing a
 * secret value (see {@linkcode configSecrets}) replaced by `[REDACTED]`, proxy URLs with
 * their credentials removed. Durations are shown in milliseconds, sizes in bytes.
 */
export function redactedConfig(loaded: LoadedConfig): unknown {
  const secrets = [...configSecrets(loaded)];
  // Every interpolated value counts here, short ones too: /config shows values, not prose.
  for (const value of loaded.interpolatedValues) if (value) secrets.push(value);
  const walk = (value: unknown, key: string): unknown => {
    if (typeof value === "string") {
      if (SECRET_KEYS.has(key)) return value === "" ? "" : REDACTED;
      // Credentials go first; an interpolated value elsewhere in the URL still hides it.
      const shown = key === "url" && value.includes("@") ? redactUrlCredentials(value) : value;
      return secrets.some((s) => shown.includes(s)) ? REDACTED : shown;
    }
    if (Array.isArray(value)) return value.map((item) => walk(item, key));
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    return value;
  };
  return walk(loaded.config, "");
}

const SECRET_KEYS = new Set(["token", "password"]);

/** Header names that carry credentials by convention. */
export function isSensitiveHeader(name: string): boolean {
  return /authorization|api[-_]?key|token|secret|password|cookie/i.test(name);
}

/** A URL with its user name and password replaced (for logs, `/config`); unparsable → redacted. */
export function redactUrlCredentials(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username || url.password) {
      url.username = REDACTED;
      url.password = "";
    }
    return url.href;
  } catch {
    return REDACTED;
  }
}
