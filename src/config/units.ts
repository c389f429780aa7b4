/**
 * Parsing of the human-friendly units the config accepts: durations ("250ms", "30s", "5m",
 * "1h", "30d", or a bare number in the field's documented unit) and sizes ("512KiB", "32MiB",
 * "1GB", or a bare number of bytes).
 *
 * @module
 */

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  // Budget periods ("30d" in the contract).
  d: 86_400_000,
};

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1_024,
  mib: 1_048_576,
  gib: 1_073_741_824,
};

const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/;
const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$/i;
const BARE_NUMBER_RE = /^\s*\d+(?:\.\d+)?\s*$/;

/** The unit a bare number is read in, per field. */
export type DurationUnit = "s" | "ms";

/**
 * Parses a duration into milliseconds. A number (or a numeric string) is read in `bareUnit`.
 * Returns `undefined` for anything that is not a non-negative duration.
 */
export function parseDurationMs(value: unknown, bareUnit: DurationUnit): number | undefined {
  const factor = bareUnit === "s" ? 1_000 : 1;
  if (typeof value === "number") {
    return Number.isFinite(value) && value >= 0 ? value * factor : undefined;
  }
  if (typeof value !== "string") return undefined;
  if (BARE_NUMBER_RE.test(value)) return Number(value) * factor;
  const match = DURATION_RE.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * DURATION_UNITS_MS[match[2]!]!;
}

/** Parses a size into bytes: a number of bytes, or a string such as "512KiB" or "32MiB". */
export function parseSizeBytes(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") return undefined;
  const match = SIZE_RE.exec(value);
  if (!match) return undefined;
  const bytes = Number(match[1]) * SIZE_UNITS[(match[2] ?? "b").toLowerCase()]!;
  return Math.floor(bytes);
}
