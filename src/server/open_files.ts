/**
 * The process's open-files limit, and the default connection bound derived from it: every
 * proxied request may hold a client connection and an upstream connection at once, and the
 * process needs a few descriptors of its own (listeners, logs, the config file, pools).
 *
 * @module
 */

/** Descriptors kept for the process itself (listeners, stdio, files, watchers). */
const RESERVED_FDS = 64;

/**
 * Used when the limit cannot be read: not Linux, or (the usual case) Deno lets only a process
 * with every permission (`--allow-all`) read `/proc/self`. Deno raises the soft limit to the
 * hard one, which is rarely below 4096; where it is, running out is survived and learned (see
 * `ConnectionGuard.exhausted`).
 */
const FALLBACK_MAX_CONNECTIONS = 1_000;

/**
 * The soft `RLIMIT_NOFILE` of this process from `/proc/self/limits`, or undefined when it
 * cannot be read. (Deno raises the soft limit to the hard one at start-up.)
 */
export function openFilesLimit(
  read: () => string = () => Deno.readTextFileSync("/proc/self/limits"),
): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  if (soft === "unlimited") return Number.MAX_SAFE_INTEGER;
  const value = Number(soft);
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** The default `httpServer.maxConnections` for an open-files limit (two descriptors each). */
export function defaultMaxConnections(limit: number | undefined): number {
  if (limit === undefined) return FALLBACK_MAX_CONNECTIONS;
  return Math.max(1, Math.floor((limit - RESERVED_FDS) / 2));
}
